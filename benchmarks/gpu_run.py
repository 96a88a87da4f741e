"""The GPU run: one 16-frame generation at 512x512, fp16, 25 steps, CFG 7.5 (cond/uncond batched),
random weights in the real SD1.5 UNet / VAE / CLIP-L and v3 motion-module shapes (no downloads).

Prints the sampling, decode and total time, frames per second, peak VRAM (allocated and reserved),
the TFLOP/s the UNet + motion module achieved (FLOPs from torch's ``FlopCounterMode``), the UNet vs
UNet + motion-module time ratio of one 32-image call beside its FLOP ratio, and the temporal
attention batch-limit check: one 320-channel temporal layer at 1024x1024 with two windows per call
(4 groups x 128^2 pixels = 65,536 attention sequences) run unchunked and chunked.

    .venv/bin/python benchmarks/gpu_run.py                      # needs CUDA
    .venv/bin/python benchmarks/gpu_run.py --device cpu --dtype fp32 --size 64 --steps 2 --tiny
                                                                # the same code on the tiny models
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.runner_models import DTYPES, add_common_arguments, build_models, synchronize
from lib_animatediff.params import AnimateDiffParams
from lib_animatediff.runner.generate import SamplingSettings, decode, frame_conditioning, sample_latents
from motion_module import TemporalTransformer, inject
from motion_module import model as mm_model

FRAMES = 16
CFG = 7.5


def timed(fn: Callable[[], object], device: str) -> tuple[float, object]:
    synchronize(device)
    start = time.perf_counter()
    result = fn()
    synchronize(device)
    return time.perf_counter() - start, result


def peak_gib(device: str) -> tuple[float, float]:
    if not device.startswith("cuda"):
        return float("nan"), float("nan")
    return torch.cuda.max_memory_allocated() / 2**30, torch.cuda.max_memory_reserved() / 2**30


def unet_call(pipeline, size: int, device: str) -> Callable[[], object]:
    """One guided-batch UNet call (``2 x FRAMES`` images)."""
    sampling = SamplingSettings(prompt="a boat", negative_prompt="blurry", width=size, height=size)
    cond, uncond = frame_conditioning(pipeline, sampling, FRAMES, AnimateDiffParams(batch_size=FRAMES))
    hidden = torch.cat([cond.hidden, uncond.hidden])
    factor = pipeline.vae_scale_factor
    latents = torch.randn(
        2 * FRAMES, 4, size // factor, size // factor, device=device, dtype=pipeline.unet.dtype
    )
    timestep = torch.tensor(500, device=device)
    return lambda: pipeline.unet(latents, timestep, encoder_hidden_states=hidden).sample


def count_flops(call: Callable[[], object]) -> int:
    with FlopCounterMode(display=False) as counter:
        call()
    return counter.get_total_flops()


def mm_overhead(pipeline, mm, size: int, device: str, reps: int) -> tuple[float, float, int]:
    """(time ratio, FLOP ratio, FLOPs with the motion module) of one guided call, UNet + motion
    module over the UNet; times are the minimum of ``reps`` after a warm-up call each."""
    call = unet_call(pipeline, size, device)
    with torch.no_grad():
        plain_flops = count_flops(call)
        plain = min(timed(call, device)[0] for _ in range(reps + 1))
        with inject(pipeline.unet, mm) as handle:
            handle.set_frames(FRAMES)
            animated_flops = count_flops(call)
            animated = min(timed(call, device)[0] for _ in range(reps + 1))
    return animated / plain, animated_flops / plain_flops, animated_flops


def attention_limit_check(device: str, dtype: torch.dtype) -> None:
    """The 1024^2 two-window temporal layer, unchunked then chunked."""
    groups, side, channels = 4, 128, 320
    if not device.startswith("cuda"):
        groups, side, channels = 4, 8, 64  # the plumbing only: CPU kernels have no grid limit
    layer = TemporalTransformer(channels, 32).to(device, dtype).eval()
    x = torch.randn(groups * FRAMES, channels, side, side, device=device, dtype=dtype)
    sequences = groups * side * side
    for label, limit in (("unchunked", sequences), ("chunked", mm_model.SDPA_MAX_BATCH)):
        saved = mm_model.SDPA_MAX_BATCH
        mm_model.SDPA_MAX_BATCH = limit
        try:
            with torch.no_grad():
                seconds, _ = timed(lambda: layer(x, FRAMES), device)
            print(f"  temporal layer, {sequences} sequences, {label:<9}: ok, {1000 * seconds:.1f} ms")
        except RuntimeError as error:
            print(
                f"  temporal layer, {sequences} sequences, {label:<9}: FAILED ({str(error).splitlines()[0]})"
            )
        finally:
            mm_model.SDPA_MAX_BATCH = saved
            if device.startswith("cuda"):
                torch.cuda.synchronize()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_arguments(parser, steps=25, size=512)
    parser.set_defaults(device="cuda", dtype="fp16", full_size=True)
    parser.add_argument("--tiny", action="store_true", help="the tiny models instead of the SD1.5 shapes")
    args = parser.parse_args()
    args.full_size = not args.tiny
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print(
            f"gpu_run: no CUDA device visible (torch {torch.__version__}, torch.cuda.is_available() is False);"
            " this benchmark needs an NVIDIA GPU. Nothing was run.",
            file=sys.stderr,
        )
        return 2
    torch.set_num_threads(args.threads)
    device = args.device
    if device.startswith("cuda"):
        print(f"GPU: {torch.cuda.get_device_name(0)} | torch {torch.__version__} | CUDA {torch.version.cuda}")
    pipeline, mm = build_models(args)
    params = AnimateDiffParams(video_length=FRAMES, batch_size=FRAMES, format=("PNG",))
    sampling = SamplingSettings(
        prompt="a paper boat on a pond", negative_prompt="blurry", width=args.size, height=args.size,
        steps=args.steps, cfg_scale=CFG, sampler="DDIM", seed=1,
    )  # fmt: skip
    warm = dataclasses.replace(sampling, steps=1)
    decode(pipeline, sample_latents(pipeline, mm, params, warm, progress=False).latents[:8], progress=False)
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    sample_s, sampled = timed(lambda: sample_latents(pipeline, mm, params, sampling, progress=False), device)
    peak_sampling = peak_gib(device)
    decode_s, _ = timed(lambda: decode(pipeline, sampled.latents, progress=False), device)
    peak_total = peak_gib(device)
    ratio, flop_ratio, call_flops = mm_overhead(pipeline, mm, args.size, device, args.reps)
    total = sample_s + decode_s
    print(
        f"{FRAMES} frames {args.size}x{args.size}, {args.steps} DDIM steps, CFG {CFG} (cond/uncond batched), "
        f"{device} {args.dtype}, {'tiny models' if args.tiny else 'SD1.5 + v3 shapes, random weights'}"
    )
    print(
        f"  sampling {sample_s:.2f} s, decode {decode_s:.2f} s, total {total:.2f} s, {FRAMES / total:.2f} frames/s"
    )
    print(f"  peak VRAM allocated / reserved: sampling {peak_sampling[0]:.2f} / {peak_sampling[1]:.2f} GiB, "
          f"with decode {peak_total[0]:.2f} / {peak_total[1]:.2f} GiB")  # fmt: skip
    print(
        f"  UNet + motion module: {call_flops * args.steps / sample_s / 1e12:.3g} TFLOP/s achieved while sampling"
    )
    print(
        f"  one guided call (UNet+MM)/UNet: time x{ratio:.3f}, FLOP x{flop_ratio:.3f}, time/FLOP {ratio / flop_ratio:.3f}"
    )
    attention_limit_check(device, DTYPES[args.dtype])
    return 0


if __name__ == "__main__":
    sys.exit(main())
