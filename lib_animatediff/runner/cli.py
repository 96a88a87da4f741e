"""Command line of ``python -m lib_animatediff``: ``generate`` (real models) and ``demo`` (tiny models).

Bad input (a missing file, an invalid option value) prints ``error: ...`` naming it and exits with
status 2, before any model is loaded.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from lib_animatediff.options import (
    CLOSED_LOOP_MODES,
    CONTEXT_SCHEDULES,
    FREEINIT_FILTERS,
    FUSE_METHODS,
    INTERP_METHODS,
    NOISE_TYPES,
    RUNNER_SAMPLERS,
    SAVE_FORMATS,
)
from lib_animatediff.params import AnimateDiffParams

DEVICES = ("auto", "cpu", "cuda")
DTYPES = ("auto", "fp32", "fp16", "bf16")
DEMO_PROMPT = "a paper boat on a pond\n0: morning light\n12: sunset, orange sky"
EXIT_BAD_INPUT = 2


def build_parser() -> argparse.ArgumentParser:
    """The ``generate`` and ``demo`` sub-commands and their options."""
    parser = argparse.ArgumentParser(
        prog="python -m lib_animatediff",
        description="AnimateDiff text-to-video on diffusers, offline, with context windows and prompt travel.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="{generate,demo}")
    generate = commands.add_parser(
        "generate",
        help="render a video with a Stable Diffusion model and a motion module",
        description="Render a video. Multi-line prompts (or --prompt-file) use prompt travel: "
        "'N: text' lines are keyframes, lines before them a shared head, lines after them a shared tail.",
    )
    generate.add_argument(
        "--model", required=True, type=Path, help="diffusers folder or single-file SD1.5/SDXL .safetensors"
    )
    generate.add_argument(
        "--motion-module", required=True, type=Path, help="motion-module file (.safetensors or .ckpt)"
    )
    generate.add_argument("--tokenizer", type=Path, help="CLIP tokenizer folder (single-file models only)")
    prompt = generate.add_mutually_exclusive_group(required=True)
    prompt.add_argument("--prompt", help="prompt text (newlines allowed for prompt travel)")
    prompt.add_argument("--prompt-file", type=Path, help="read the prompt from this text file")
    generate.add_argument("--negative-prompt", default="")
    generate.add_argument("--width", type=int, default=512)
    generate.add_argument("--height", type=int, default=512)
    generate.add_argument("--steps", type=int, default=20)
    generate.add_argument("--cfg", type=float, default=7.5, help="classifier-free guidance scale")
    generate.add_argument("--sampler", choices=RUNNER_SAMPLERS, default="DPM++ 2M")
    generate.add_argument("--device", choices=DEVICES, default="auto")
    generate.add_argument("--dtype", choices=DTYPES, default="auto", help="auto: fp16 on CUDA, fp32 on CPU")
    generate.add_argument(
        "--motion-lora",
        action="append",
        default=[],
        metavar="PATH:STRENGTH",
        help="motion LoRA file and strength (default 1.0); repeatable",
    )
    _add_common_options(generate, frames=16, formats=("GIF", "PNG"))

    demo = commands.add_parser(
        "demo",
        help="render a short clip with a tiny random-weight model built in code (no downloads)",
        description="Builds a tiny random-weight SD1.5-shaped pipeline and motion module (seeded) and renders "
        "a short clip through the whole path. The frames are noise: the weights are random.",
    )
    demo.add_argument("--prompt", default=DEMO_PROMPT, help="prompt text (prompt travel by default)")
    demo.add_argument("--steps", type=int, default=6)
    _add_common_options(demo, frames=24, formats=("GIF", "MP4", "PNG"))
    return parser


def _add_common_options(parser: argparse.ArgumentParser, *, frames: int, formats: tuple[str, ...]) -> None:
    defaults = AnimateDiffParams()
    parser.add_argument("--frames", type=int, default=frames, help="number of frames (video length)")
    parser.add_argument("--fps", type=float, default=defaults.fps)
    parser.add_argument(
        "--loop-number", type=int, default=defaults.loop_number, help="GIF/WEBP loops, 0 = forever"
    )
    parser.add_argument(
        "--context", type=int, default=defaults.batch_size, help="context window length in frames"
    )
    parser.add_argument("--stride", type=int, default=defaults.stride, help="context dilation levels")
    parser.add_argument(
        "--overlap", type=int, default=defaults.overlap, help="frames shared by windows; -1 = context/4"
    )
    parser.add_argument("--closed-loop", choices=CLOSED_LOOP_MODES, default=defaults.closed_loop)
    parser.add_argument("--fuse-method", choices=FUSE_METHODS, default=defaults.fuse_method)
    parser.add_argument("--context-schedule", choices=CONTEXT_SCHEDULES, default=defaults.context_schedule)
    parser.add_argument("--noise", choices=NOISE_TYPES, default=defaults.noise)
    parser.add_argument(
        "--windows-per-call", type=int, default=1, help="context windows batched into one UNet call"
    )
    parser.add_argument("--seed", type=int, default=-1 if parser.prog.endswith("generate") else 0)
    parser.add_argument("--freeinit", action="store_true", help="enable FreeInit")
    parser.add_argument("--freeinit-filter", choices=FREEINIT_FILTERS, default=defaults.freeinit_filter)
    parser.add_argument("--freeinit-ds", type=float, default=defaults.freeinit_ds)
    parser.add_argument("--freeinit-dt", type=float, default=defaults.freeinit_dt)
    parser.add_argument("--freeinit-iters", type=int, default=defaults.freeinit_iters)
    parser.add_argument(
        "--formats", nargs="+", default=list(formats), metavar="FORMAT", help=", ".join(SAVE_FORMATS)
    )
    parser.add_argument("--interp", choices=INTERP_METHODS, default=defaults.interp)
    parser.add_argument("--interp-x", type=int, default=defaults.interp_x)
    parser.add_argument("--outdir", type=Path, default=Path("outputs"))
    parser.add_argument(
        "--memory-budget-mb",
        type=float,
        default=0,
        help="refuse a request needing more host memory for its frames; 0 = the memory free now",
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    # Before torch loads: idle OpenMP threads sleep rather than spin (spinning stalls shared CPUs).
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    args = build_parser().parse_args(argv)
    try:
        if args.command == "demo":
            from lib_animatediff.runner.app import run_demo

            return run_demo(args)
        from lib_animatediff.runner.app import run_generate

        return run_generate(args)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
