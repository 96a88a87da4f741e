"""Context-window cost: UNet frame evaluations per step vs the ideal, and batched vs one window per call.

1. For N = 16, 32, 64, 128 frames (context 16, overlap 4, closed loop R-P, stride 1; also stride 2
   and closed loop A at N=64) the runner's guided denoiser is run for ``--count-steps`` steps with a
   counting stand-in UNet; frame evaluations per step per guidance group / N is the cost relative to
   one pass over the frames (ideal 1.0; the reference's derived values: 1.50, 1.25, 1.375 for
   N = 32, 64, 128 and 2.0 for stride 2).
2. Wall time of one guided denoiser step on the tiny UNet + motion module at N=64: all windows of a
   step batched into one UNet call vs one window per call, and vs 4 disjoint windows ("batched"
   schedule, the ideal 64-frame pass). Min over interleaved repetitions; "outside UNet" is the
   share of the step spent in window planning, gathering and fusion (min over repetitions).

    .venv/bin/python benchmarks/windows.py [--reps 5] [--size 64] [--threads 2] [--device cpu] [--dtype fp32]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from types import SimpleNamespace

# Idle OpenMP threads sleep instead of spinning: on a shared 2-core box spinning made 2 threads ~10x slower.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.runner_models import add_common_arguments, build_models, synchronize
from lib_animatediff.params import AnimateDiffParams
from lib_animatediff.runner.generate import SamplingSettings, frame_conditioning
from lib_animatediff.runner.samplers import make_scheduler
from lib_animatediff.runner.sampling import FrameConditioning, WindowedGuidedDenoiser
from lib_animatediff.windows import WindowPlan
from motion_module import inject

CONTEXT, OVERLAP = 16, 4
REFERENCE = {16: 1.0, 32: 1.5, 64: 1.25, 128: 1.375}


class CountingUNet(torch.nn.Module):
    """Stand-in UNet that returns zeros; the denoiser counts the rows it is given."""

    def forward(self, x, timestep, *, encoder_hidden_states, added_cond_kwargs=None):
        return SimpleNamespace(sample=torch.zeros_like(x))


def evaluations_per_frame(frames: int, settings: WindowPlan, steps: int) -> tuple[float, float, float]:
    """(mean, min, max) over steps of frame evaluations per guidance group divided by ``frames``."""
    cond = FrameConditioning(hidden=torch.zeros(frames, 1, 1))
    denoiser = WindowedGuidedDenoiser(
        CountingUNet(), lambda n: None, cond, cond, 7.5, settings, make_scheduler("DDIM").alphas_cumprod
    )
    latents = torch.zeros(frames, 4, 1, 1)
    per_step = []
    for step in range(steps):
        before = denoiser.frame_evaluations
        denoiser(latents, torch.tensor(500), step)
        per_step.append((denoiser.frame_evaluations - before) / 2 / frames)
    return statistics.mean(per_step), min(per_step), max(per_step)


def count_table(steps: int) -> None:
    print(
        f"UNet frame evaluations per step / N  (context {CONTEXT}, overlap {OVERLAP}, mean over {steps} steps)"
    )
    print(f"{'N':>5} {'options':<16}{'mean':>8}{'min':>8}{'max':>8}{'reference':>11}")
    cases = [(n, "R-P, stride 1", WindowPlan(CONTEXT, 1, OVERLAP, "R-P"), REFERENCE[n]) for n in REFERENCE]
    cases += [
        (64, "R-P, stride 2", WindowPlan(CONTEXT, 2, OVERLAP, "R-P"), 2.0),
        (64, "A, stride 1", WindowPlan(CONTEXT, 1, OVERLAP, "A"), 1.5),
        (64, "static", WindowPlan(CONTEXT, 1, OVERLAP, "R-P", schedule="static"), 1.25),
    ]
    worst = 0.0
    for frames, label, settings, reference in cases:
        mean, low, high = evaluations_per_frame(frames, settings, steps)
        worst = max(worst, abs(mean / reference - 1))
        print(f"{frames:>5} {label:<16}{mean:>8.3f}{low:>8.3f}{high:>8.3f}{reference:>11.3f}")
    print(f"RATIO windows_count_error {worst:.4f}")


def timing_table(args: argparse.Namespace) -> None:
    frames = 64
    pipeline, mm = build_models(args)
    sampling = SamplingSettings(prompt="a boat", negative_prompt="blurry", width=args.size, height=args.size)
    params = AnimateDiffParams(video_length=frames, batch_size=CONTEXT, overlap=OVERLAP)
    cond, uncond = frame_conditioning(pipeline, sampling, frames, params)
    factor = pipeline.vae_scale_factor
    latents = torch.randn(frames, 4, args.size // factor, args.size // factor).to(
        args.device, pipeline.unet.dtype
    )
    alphas = make_scheduler("DDIM").alphas_cumprod
    modes = {
        "uniform, 1 window per call": WindowPlan(CONTEXT, 1, OVERLAP),
        "uniform, all windows in 1 call": WindowPlan(CONTEXT, 1, OVERLAP, max_frames_per_call=64 * CONTEXT),
        "4 disjoint windows, 1 per call": WindowPlan(CONTEXT, 1, 0, schedule="batched"),
    }
    times: dict[str, list[float]] = {name: [] for name in modes}
    unet_seconds = {name: [] for name in modes}
    inner = pipeline.unet.forward
    spent = [0.0]

    def timed_forward(*call_args, **call_kwargs):
        synchronize(args.device)
        begin = time.perf_counter()
        result = inner(*call_args, **call_kwargs)
        synchronize(args.device)
        spent[0] += time.perf_counter() - begin
        return result

    pipeline.unet.forward = timed_forward
    with torch.no_grad(), inject(pipeline.unet, mm) as handle:
        denoisers = {
            name: WindowedGuidedDenoiser(
                pipeline.unet, handle.set_frames, cond, uncond, 7.5, settings, alphas
            )
            for name, settings in modes.items()
        }
        timestep = torch.tensor(500)
        for denoiser in denoisers.values():
            denoiser(latents, timestep, 0)
        for _ in range(args.reps):
            for name, denoiser in denoisers.items():
                synchronize(args.device)
                spent[0] = 0.0
                start = time.perf_counter()
                denoiser(latents, timestep, 0)
                synchronize(args.device)
                times[name].append(time.perf_counter() - start)
                unet_seconds[name].append(spent[0])
    base = min(times["4 disjoint windows, 1 per call"])
    print(
        f"\none guided step at N={frames}, {args.size}x{args.size}, {args.device} {args.dtype}, "
        f"{torch.get_num_threads()} threads, min of {args.reps} interleaved reps"
    )
    print(f"{'mode':<34}{'min s':>9}{'median s':>10}{'/ disjoint':>12}{'outside UNet':>14}")
    for name, values in times.items():
        outside = min((total - unet) / total for total, unet in zip(values, unet_seconds[name], strict=True))
        print(
            f"{name:<34}{min(values):>9.3f}{statistics.median(values):>10.3f}{min(values) / base:>12.3f}"
            f"{outside:>14.1%}"
        )
    ratio = min(times["uniform, 1 window per call"]) / min(times["uniform, all windows in 1 call"])
    print(
        f"speed-up of batching the step's windows into one call: {ratio:.3f}x  (ideal window-overhead ratio 1.25)"
    )
    overhead = min(times["uniform, 1 window per call"]) / base
    spread = max(times["uniform, 1 window per call"]) / min(times["uniform, 1 window per call"])
    print(f"RATIO windows_overhead {overhead:.4f} {spread:.3f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_arguments(parser, steps=1, size=64)
    parser.add_argument("--count-steps", type=int, default=32, help="steps averaged in the count table")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    count_table(args.count_steps)
    timing_table(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
