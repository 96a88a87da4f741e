"""Cost of the motion module: (UNet + motion module) / (UNet) for one 16-frame UNet call.

Prints per model size the wall-time ratio (min over interleaved repetitions, 2 threads by default, after a
warm-up) beside the FLOP ratio counted by ``torch.utils.flop_counter.FlopCounterMode``, with a v2
motion module (mid block included) of matching width, 16 frames in one group:

* the tiny SD1.5 test fixtures (blocks 32/64/128/128, 8x8 latents), ldm and diffusers UNet;
* a "mini" SD1.5 (blocks 64/128/256/256, 1/5 of SD1.5's width) on 16x16 latents (``--mini-latent``
  32 or 64 times it at 256^2 / 512^2 images, minutes on two threads), diffusers UNet;
* FLOPs only: the mini UNet on 64x64 latents, i.e. a 512x512 image, and the full-width SD1.5 UNet
  at 512x512.

FLOPs are counted on the ``meta`` device (shapes only, no arithmetic) with the diffusers UNet of
the row's shape; the ldm UNet of the same shape does the same convolutions and matrix products.

Times use the diffusers UNet where both are possible because its attention runs through
``scaled_dot_product_attention``, as A1111's default attention optimisation does; the ldm
fixture's plain attention makes the UNet slower and the ratio smaller.

Run from the repository root: ``.venv/bin/python benchmarks/mm_overhead.py [--repeats N] [--threads N]``.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from diffusers import UNet2DConditionModel
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from motion_module import MotionModule, inject
from tests.fixtures.tiny_models import (
    block_channels,
    diffusers_config,
    tiny_diffusers_unet,
    tiny_ldm_unet,
    tiny_motion_module,
    unet_inputs,
)

FRAMES = 16
VARIANT = "v2"
MINI_CHANNELS = 64


def rows(mini_latent: int) -> list[tuple[str, str | None, int, int]]:
    """``(label, UNet kind to time or None for FLOPs only, model_channels, latent size)``."""
    return [
        ("tiny SD1.5 fixture (ldm), 8x8 latents", "ldm", 32, 8),
        ("tiny SD1.5 fixture (diffusers), 8x8 latents", "diffusers", 32, 8),
        (
            f"mini SD1.5 64/128/256/256, {mini_latent}x{mini_latent} latents",
            "diffusers",
            MINI_CHANNELS,
            mini_latent,
        ),
        ("mini SD1.5 64/128/256/256, 64x64 latents (512^2)", None, MINI_CHANNELS, 64),
        ("SD1.5 320/640/1280/1280, 64x64 latents (512^2)", None, 320, 64),
    ]


def call_unet(
    unet: nn.Module, latents: torch.Tensor, timesteps: torch.Tensor, context: torch.Tensor
) -> Callable:
    if hasattr(unet, "input_blocks"):
        return lambda: unet(latents, timesteps, context=context)
    return lambda: unet(latents, timesteps, encoder_hidden_states=context)


def count_flops(run: Callable[[], object]) -> int:
    with FlopCounterMode(display=False) as counter:
        run()
    return counter.get_total_flops()


def flop_ratio(model_channels: int, latent_size: int) -> tuple[float, float]:
    """(FLOP ratio, parameter ratio) of the animated over the plain diffusers UNet, on ``meta``."""
    with torch.device("meta"):
        unet = UNet2DConditionModel(**diffusers_config("sd15", model_channels))
        mm = MotionModule(VARIANT, block_channels("sd15", model_channels), has_mid_block=True)
    run = call_unet(unet, *(t.to("meta") for t in unet_inputs(FRAMES, latent_size=latent_size)))
    plain = count_flops(run)
    with inject(unet, mm) as handle:
        handle.set_frames(FRAMES)
        animated = count_flops(run)
    params = [sum(p.numel() for p in module.parameters()) for module in (unet, mm)]
    return animated / plain, 1 + params[1] / params[0]


def interleaved_times(runs: list[Callable[[], object]], repeats: int) -> list[list[float]]:
    """Wall times of each callable over ``repeats`` rounds that run them in turn, after a warm-up."""
    for run in runs:
        run()
    times: list[list[float]] = [[] for _ in runs]
    for _ in range(repeats):
        for i, run in enumerate(runs):
            start = time.perf_counter()
            run()
            times[i].append(time.perf_counter() - start)
    return times


def time_ratio(kind: str, model_channels: int, latent_size: int, repeats: int) -> tuple[float, float, float]:
    """Best times (ms) of one call of the same seeded UNet without and with the motion module, and
    the spread (max/min) of the animated times."""
    make = tiny_ldm_unet if kind == "ldm" else tiny_diffusers_unet
    plain, animated = make("sd15", model_channels=model_channels), make("sd15", model_channels=model_channels)
    mm = tiny_motion_module(VARIANT, model_channels=model_channels)
    inputs = unet_inputs(FRAMES, latent_size=latent_size)
    with torch.inference_mode(), inject(animated, mm) as handle:
        handle.set_frames(FRAMES)
        times = interleaved_times([call_unet(plain, *inputs), call_unet(animated, *inputs)], repeats)
    return 1000 * min(times[0]), 1000 * min(times[1]), max(times[1]) / min(times[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="interleaved timing rounds (default 5)")
    parser.add_argument(
        "--mini-latent", type=int, default=16, help="latent size of the timed mini UNet (default 16)"
    )
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(
        f"{FRAMES} frames, motion module {VARIANT}, torch {torch.__version__}, {args.threads} threads, "
        f"min of {args.repeats} interleaved rounds"
    )
    header = f"{'model':<50} {'UNet ms':>9} {'+MM ms':>9} {'time x':>7} {'time/FLOP':>9} {'FLOP x':>7} {'params x':>8}"
    print(header)
    print("-" * len(header))
    counted: dict[tuple[int, int], tuple[float, float]] = {}
    mini = (float("nan"), float("nan"))
    for label, kind, model_channels, latent_size in rows(args.mini_latent):
        shape = (model_channels, latent_size)
        if shape not in counted:
            counted[shape] = flop_ratio(*shape)
        flops, params = counted[shape]
        timed = f"{'-':>9} {'-':>9} {'-':>7} {'-':>9}"
        if kind is not None:
            plain_ms, animated_ms, spread = time_ratio(kind, model_channels, latent_size, args.repeats)
            ratio = animated_ms / plain_ms
            timed = f"{plain_ms:>9.1f} {animated_ms:>9.1f} {ratio:>7.3f} {ratio / flops:>9.3f}"
            if model_channels == MINI_CHANNELS:
                mini = (ratio / flops, spread)
        print(f"{label:<50} {timed} {flops:>7.3f} {params:>8.3f}", flush=True)
    print(f"RATIO mm_time_per_flop {mini[0]:.4f} {mini[1]:.3f}")


if __name__ == "__main__":
    main()
