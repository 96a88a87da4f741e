"""Models and options shared by the runner benchmarks (windows, memory, vs_diffusers).

Tiny: the demo's seeded random-weight pipeline and motion module. ``--full-size``: random weights
in the real SD1.5 UNet / VAE / CLIP-L and v3 motion-module shapes (about 1.7 GB in fp16; for a GPU).
"""

from __future__ import annotations

import argparse

import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel

from lib_animatediff.runner.configs import SD15
from lib_animatediff.runner.models import Pipeline
from lib_animatediff.runner.tiny import char_clip_tokenizer, tiny_motion_state_dict, tiny_pipeline
from motion_module import MotionModule, load_motion_module

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def add_common_arguments(parser: argparse.ArgumentParser, *, steps: int, size: int) -> None:
    """``--reps --steps --size --threads --device --dtype --full-size``."""
    parser.add_argument("--reps", type=int, default=5, help="interleaved repetitions (min is reported)")
    parser.add_argument("--steps", type=int, default=steps)
    parser.add_argument("--size", type=int, default=size, help="image width and height in pixels")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", choices=DTYPES, default="fp32")
    parser.add_argument("--full-size", action="store_true", help="real SD1.5 + v3 shapes (random weights)")


def build_models(args: argparse.Namespace) -> tuple[Pipeline, MotionModule]:
    """The pipeline and motion module the options ask for, on ``args.device`` in ``args.dtype``."""
    dtype = DTYPES[args.dtype]
    if not args.full_size:
        pipeline = tiny_pipeline(seed=0)
        state = tiny_motion_state_dict(tuple(pipeline.unet.config.block_out_channels), seed=0)
        return pipeline.to(args.device, dtype), load_motion_module(state, device=args.device, dtype=dtype)
    torch.manual_seed(0)
    with torch.device(args.device):
        config = SD15
        tokenizer = char_clip_tokenizer()
        pipeline = Pipeline(
            family="sd15",
            unet=UNet2DConditionModel(**config["unet"]).eval(),
            vae=AutoencoderKL(**config["vae"]).eval(),
            text_encoders=(CLIPTextModel(CLIPTextConfig(**config["text_encoders"][0])).eval(),),
            tokenizers=(tokenizer,),
        )
        channels = tuple(config["unet"]["block_out_channels"])
        mm = MotionModule("v3", channels, has_mid_block=False).eval()
    return pipeline.to(args.device, dtype), mm.to(dtype=dtype)


def synchronize(device: str) -> None:
    """Wait for queued GPU work (no-op on the CPU) so wall-clock times are complete."""
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()
