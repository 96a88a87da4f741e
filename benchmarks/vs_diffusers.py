"""End-to-end time of our runner vs diffusers' ``AnimateDiffPipeline`` on the same models.

Same tiny random-weight UNet / VAE / text encoder, the same motion weights (converted to a diffusers
``MotionAdapter``), the same DDIM scheduler config, steps, CFG and seed, 16 frames in one context
window. Both sides encode the prompts, sample and decode to frames; neither writes files. The
ratio is ours / diffusers, the minimum over interleaved repetitions (warm-up first).

    .venv/bin/python benchmarks/vs_diffusers.py [--reps 5] [--steps 6] [--size 64] [--threads 2]
        [--device cpu|cuda] [--dtype fp32|fp16] [--full-size]

``--full-size`` builds random-weight models in the real SD1.5 + v3 motion-module shapes (for a GPU).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

# Idle OpenMP threads sleep instead of spinning: on a shared 2-core box spinning made 2 threads ~10x slower.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from diffusers import AnimateDiffPipeline, MotionAdapter, UNetMotionModel
from diffusers.loaders.single_file_utils import convert_animatediff_checkpoint_to_diffusers

from benchmarks.runner_models import add_common_arguments, build_models, synchronize
from lib_animatediff.params import AnimateDiffParams
from lib_animatediff.runner.generate import SamplingSettings, render
from lib_animatediff.runner.samplers import make_scheduler

FRAMES = 16
PROMPT, NEGATIVE = "a paper boat on a pond", "blurry"


def diffusers_pipeline(pipeline, mm) -> AnimateDiffPipeline:
    """diffusers' AnimateDiff pipeline around the same weights (motion module -> MotionAdapter)."""
    adapter = MotionAdapter(
        block_out_channels=tuple(pipeline.unet.config.block_out_channels),
        motion_layers_per_block=2,
        motion_num_attention_heads=8,
        motion_norm_num_groups=32,
        motion_max_seq_length=mm.pe_length,
        use_motion_mid_block=mm.has_mid_block,
    )
    state = {k: v.float() for k, v in mm.state_dict().items()}
    missing, unexpected = adapter.load_state_dict(
        convert_animatediff_checkpoint_to_diffusers(state), strict=False
    )
    if unexpected or any(not key.endswith("pos_embed.pe") for key in missing):
        raise RuntimeError(
            f"motion weights did not convert: missing {missing[:3]}, unexpected {unexpected[:3]}"
        )
    unet = UNetMotionModel.from_unet2d(pipeline.unet, adapter).to(pipeline.unet.device, pipeline.unet.dtype)
    return AnimateDiffPipeline(
        vae=pipeline.vae,
        text_encoder=pipeline.text_encoders[0],
        tokenizer=pipeline.tokenizers[0],
        unet=unet.eval(),
        motion_adapter=adapter,
        scheduler=make_scheduler("DDIM", mm.beta_schedule),
    )


def timed(fn: Callable[[], object], device: str) -> float:
    synchronize(device)
    start = time.perf_counter()
    fn()
    synchronize(device)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_arguments(parser, steps=6, size=64)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    pipeline, mm = build_models(args)
    theirs = diffusers_pipeline(pipeline, mm)
    theirs.set_progress_bar_config(disable=True)
    params = AnimateDiffParams(video_length=FRAMES, batch_size=FRAMES, format=("PNG",))
    sampling = SamplingSettings(
        prompt=PROMPT, negative_prompt=NEGATIVE, width=args.size, height=args.size,
        steps=args.steps, cfg_scale=7.5, sampler="DDIM", seed=1,
    )  # fmt: skip

    def ours() -> object:
        return render(pipeline, mm, params, sampling, progress=False)

    def diffusers_run() -> object:
        with torch.no_grad():
            return theirs(
                prompt=PROMPT, negative_prompt=NEGATIVE, num_frames=FRAMES, height=args.size, width=args.size,
                num_inference_steps=args.steps, guidance_scale=7.5, output_type="np",
                generator=torch.Generator().manual_seed(1), decode_chunk_size=8,
            )  # fmt: skip

    ours()
    diffusers_run()
    times: dict[str, list[float]] = {"ours": [], "diffusers": []}
    for _ in range(args.reps):
        times["ours"].append(timed(ours, args.device))
        times["diffusers"].append(timed(diffusers_run, args.device))
    print(
        f"end to end, {FRAMES} frames, {args.size}x{args.size}, {args.steps} DDIM steps, CFG 7.5, "
        f"{args.device} {args.dtype}, {torch.get_num_threads()} threads, {args.reps} interleaved reps"
    )
    print(f"{'runner':<12}{'min s':>10}{'median s':>10}{'max s':>10}")
    for name, values in times.items():
        print(f"{name:<12}{min(values):>10.3f}{statistics.median(values):>10.3f}{max(values):>10.3f}")
    ratio = min(times["ours"]) / min(times["diffusers"])
    print(f"ratio ours / diffusers (min over reps): {ratio:.3f}")
    print(f"RATIO vs_diffusers {ratio:.4f} {max(times['ours']) / min(times['ours']):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
