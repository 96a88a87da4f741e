"""Peak memory vs number of frames with context windows (must stay nearly flat).

Each point runs in a fresh subprocess: build the tiny models (or ``--full-size``), note the memory
after loading, sample N frames, then decode and write them as the runner does (``write_video``:
frames streamed from the VAE, a chunk at a time, into GIF and WEBP writers in a temporary folder);
the peaks above that baseline after sampling and after writing are reported.
CPU: peak RSS (``ru_maxrss``); CUDA: ``torch.cuda.max_memory_allocated``. Windowed points use
context 16 (N = 16, 64, 256); the no-window points (context = N = 16, 32) show the growth windows
avoid. The goal is peak(256)/peak(16) <= 1.10 with decoding and writing included.

    .venv/bin/python benchmarks/memory.py [--reps 5] [--size 128] [--steps 2] [--threads 2] [--device cpu] [--dtype fp32]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
POINTS = (
    ("windows", 16, 16),
    ("windows", 64, 16),
    ("windows", 256, 16),
    ("no windows", 16, 16),
    ("no windows", 32, 32),
)
LONG = 256


def measure(args: argparse.Namespace) -> dict[str, float]:
    """Child process: one render of ``args.frames`` frames; returns memory in MiB."""
    import resource

    import torch

    sys.path.insert(0, str(ROOT))
    from benchmarks.runner_models import build_models
    from lib_animatediff.params import AnimateDiffParams
    from lib_animatediff.runner.generate import SamplingSettings, sample_latents, write_video

    torch.set_num_threads(args.threads)
    pipeline, mm = build_models(args)
    cuda = args.device.startswith("cuda")

    def current() -> float:
        if cuda:
            return torch.cuda.max_memory_allocated() / 2**20
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    if cuda:
        torch.cuda.reset_peak_memory_stats()
    baseline = current()
    params = AnimateDiffParams(video_length=args.frames, batch_size=args.context, format=("GIF", "WEBP"))
    sampling = SamplingSettings(
        prompt="a boat", negative_prompt="blurry", width=args.size, height=args.size, steps=args.steps,
        sampler="DDIM", seed=1,
    )  # fmt: skip
    sampled = sample_latents(pipeline, mm, params, sampling, progress=False)
    after_sampling = current()
    with tempfile.TemporaryDirectory() as outdir:
        write_video(pipeline, mm, sampled, params, sampling, outdir, progress=False)
    return {"baseline": baseline, "sampled": after_sampling, "peak": current()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="fp32")
    parser.add_argument("--full-size", action="store_true")
    parser.add_argument("--reps", type=int, default=5, help="runs per point (the minimum is reported)")
    parser.add_argument("--frames", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--context", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.frames is not None:
        print(json.dumps(measure(args)))
        return 0
    forwarded = [f"--size={args.size}", f"--steps={args.steps}", f"--threads={args.threads}"]
    forwarded += [f"--device={args.device}", f"--dtype={args.dtype}"] + (
        ["--full-size"] if args.full_size else []
    )
    env = {**os.environ, "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE")}
    kind = "CUDA max allocated" if args.device.startswith("cuda") else "peak RSS"
    print(
        f"{kind} above the loaded models, {args.size}x{args.size}, {args.steps} steps, {args.device} {args.dtype}, "
        f"min of {args.reps} interleaved runs per point (spread = max/min of the decode/write peak)"
    )
    samples: dict[tuple[str, int], list[dict[str, float]]] = {(mode, n): [] for mode, n, _ in POINTS}
    for _ in range(args.reps):
        for mode, frames, context in POINTS:
            child = subprocess.run(
                [sys.executable, __file__, *forwarded, f"--frames={frames}", f"--context={context}"],
                capture_output=True, text=True, env=env, check=True, cwd=ROOT,
            )  # fmt: skip
            result = json.loads(child.stdout.strip().splitlines()[-1])
            samples[(mode, frames)].append(
                {name: result[name] - result["baseline"] for name in ("sampled", "peak")}
            )
    print(
        f"{'mode':<12}{'frames':>7}{'context':>8}{'sampling MiB':>14}{'+ decode/write MiB':>20}{'spread':>8}"
    )
    rows: dict[tuple[str, int], dict[str, float]] = {}
    for mode, frames, context in POINTS:
        runs = samples[(mode, frames)]
        row = {name: min(run[name] for run in runs) for name in ("sampled", "peak")}
        rows[(mode, frames)] = row
        spread = max(run["peak"] for run in runs) / max(row["peak"], 1e-9)
        print(f"{mode:<12}{frames:>7}{context:>8}{row['sampled']:>14.1f}{row['peak']:>20.1f}{spread:>8.2f}")
    for name, label, key in (
        ("sampled", "sampling", "memory_sampling"),
        ("peak", "sampling + decode + write", "memory"),
    ):
        windowed = rows[("windows", LONG)][name] / max(rows[("windows", 16)][name], 1e-9)
        plain = rows[("no windows", 32)][name] / max(rows[("no windows", 16)][name], 1e-9)
        print(
            f"{label}: windows peak({LONG})/peak(16) = {windowed:.2f}; no windows peak(32)/peak(16) = {plain:.2f}"
        )
        print(f"RATIO {key} {windowed:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
