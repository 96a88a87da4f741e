"""Peak memory vs number of frames with context windows (must stay nearly flat).

Each point runs in a fresh subprocess: build the tiny models (or ``--full-size``), note the memory
after loading, sample N frames, then decode them (no files); the peaks above that baseline after
sampling and after decoding are reported.
CPU: peak RSS (``ru_maxrss``); CUDA: ``torch.cuda.max_memory_allocated``. Windowed points use
context 16 (N = 16, 128); the no-window points (context = N = 16, 32) show the growth windows avoid.

    .venv/bin/python benchmarks/memory.py [--size 128] [--steps 2] [--threads 2] [--device cpu] [--dtype fp32]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
POINTS = (("windows", 16, 16), ("windows", 128, 16), ("no windows", 16, 16), ("no windows", 32, 32))


def measure(args: argparse.Namespace) -> dict[str, float]:
    """Child process: one render of ``args.frames`` frames; returns memory in MiB."""
    import resource

    import torch

    sys.path.insert(0, str(ROOT))
    from benchmarks.runner_models import build_models
    from lib_animatediff.params import AnimateDiffParams
    from lib_animatediff.runner.generate import (
        SamplingSettings,
        decode,
        frame_conditioning,
        initial_noise,
        sample,
    )
    from motion_module import inject

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
    params = AnimateDiffParams(video_length=args.frames, batch_size=args.context, format=("PNG",))
    sampling = SamplingSettings(
        prompt="a boat", negative_prompt="blurry", width=args.size, height=args.size, steps=args.steps,
        sampler="DDIM", seed=1,
    )  # fmt: skip
    generator = torch.Generator().manual_seed(1)
    conditioning = frame_conditioning(pipeline, sampling, args.frames, params)
    noise = initial_noise(pipeline, sampling, params, generator)
    with torch.no_grad(), inject(pipeline.unet, mm) as handle:
        latents, _ = sample(
            pipeline, handle.set_frames, conditioning, noise, mm, params, sampling, generator, progress=False
        )
    sampled = current()
    decode(pipeline, latents, progress=False)
    return {"baseline": baseline, "sampled": sampled, "peak": current()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="fp32")
    parser.add_argument("--full-size", action="store_true")
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
        f"{kind} above the loaded models, {args.size}x{args.size}, {args.steps} steps, {args.device} {args.dtype}"
    )
    print(
        f"{'mode':<12}{'frames':>7}{'context':>8}{'baseline MiB':>14}{'sampling MiB':>14}{'with decode MiB':>17}"
    )
    rows: dict[tuple[str, int], dict[str, float]] = {}
    for mode, frames, context in POINTS:
        child = subprocess.run(
            [sys.executable, __file__, *forwarded, f"--frames={frames}", f"--context={context}"],
            capture_output=True, text=True, env=env, check=True, cwd=ROOT,
        )  # fmt: skip
        result = json.loads(child.stdout.strip().splitlines()[-1])
        row = {name: result[name] - result["baseline"] for name in ("sampled", "peak")}
        rows[(mode, frames)] = row
        print(
            f"{mode:<12}{frames:>7}{context:>8}{result['baseline']:>14.1f}{row['sampled']:>14.1f}{row['peak']:>17.1f}"
        )
    for name, label in (("sampled", "sampling"), ("peak", "sampling + decode")):
        windowed = rows[("windows", 128)][name] / max(rows[("windows", 16)][name], 1e-9)
        plain = rows[("no windows", 32)][name] / max(rows[("no windows", 16)][name], 1e-9)
        print(
            f"{label}: windows peak(128)/peak(16) = {windowed:.2f}; no windows peak(32)/peak(16) = {plain:.2f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
