"""What the ``generate`` and ``demo`` commands do with their parsed arguments."""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from lib_animatediff import budget
from lib_animatediff.budget import budget_bytes
from lib_animatediff.runner.arguments import animation_params, parse_motion_lora, require_file
from lib_animatediff.runner.generate import SamplingSettings, generate
from lib_animatediff.runner.models import load_pipeline
from lib_animatediff.runner.tiny import tiny_motion_state_dict, tiny_pipeline
from motion_module import load_motion_module

DEMO_SIZE = 64
DEMO_MODEL_NAME = "tiny-random-demo"
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def run_generate(args: argparse.Namespace) -> int:
    """``generate``: check every input first, then load the models and render."""
    require_file("--model", args.model)
    require_file("--motion-module", args.motion_module)
    if args.prompt_file is not None:
        require_file("--prompt-file", args.prompt_file)
    loras = tuple(parse_motion_lora(text) for text in args.motion_lora)
    params = animation_params(args, args.motion_module.name)
    prompt = args.prompt if args.prompt is not None else args.prompt_file.read_text(encoding="utf-8")
    sampling = SamplingSettings(
        prompt=prompt,
        negative_prompt=args.negative_prompt,
        width=args.width,
        height=args.height,
        steps=args.steps,
        cfg_scale=args.cfg,
        sampler=args.sampler,
        seed=args.seed,
        windows_per_call=args.windows_per_call,
    )
    budget.check(
        budget.estimate(params, args.width, args.height, streamed=True), budget_bytes(args.memory_budget_mb)
    )
    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    dtype = DTYPES.get(args.dtype, torch.float16 if device == "cuda" else torch.float32)
    mm = load_motion_module(args.motion_module, device=device, dtype=dtype)
    pipeline = load_pipeline(args.model, tokenizer_dir=args.tokenizer).to(device, dtype)
    result = generate(pipeline, mm, params, sampling, args.outdir, motion_loras=loras)
    print(f"{result.frames} frames, seed {result.seed}; wrote:")
    for path in result.paths:
        print(f"  {path}")
    return 0


def run_demo(args: argparse.Namespace) -> int:
    """``demo``: the tiny random-weight pipeline and motion module, rendered through the whole path."""
    params = animation_params(args, DEMO_MODEL_NAME)
    sampling = SamplingSettings(
        prompt=args.prompt,
        negative_prompt="blurry",
        width=DEMO_SIZE,
        height=DEMO_SIZE,
        steps=args.steps,
        cfg_scale=7.5,
        sampler="Euler a",
        seed=args.seed,
        windows_per_call=args.windows_per_call,
    )
    budget.check(
        budget.estimate(params, DEMO_SIZE, DEMO_SIZE, streamed=True), budget_bytes(args.memory_budget_mb)
    )
    pipeline = tiny_pipeline(seed=sampling.seed)
    mm = load_motion_module(
        tiny_motion_state_dict(tuple(pipeline.unet.config.block_out_channels), seed=sampling.seed)
    )
    print(
        "demo: tiny random-weight models built in code (no downloads) - the frames are NOISE, not a picture.\n"
        "      Use `generate --model ... --motion-module ...` with real weights for real videos."
    )
    result = generate(pipeline, mm, params, sampling, args.outdir)
    print(f"demo: {result.frames} frames (seed {result.seed}) written to {Path(args.outdir).resolve()}:")
    for path in result.paths:
        print(f"  {path}")
    return 0
