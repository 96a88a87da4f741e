"""One text-to-video generation on a diffusers pipeline with a motion module injected.

``generate(pipeline, mm, params, sampling, outdir)``: per-frame prompt conditioning (prompt
travel), seeded noise, the windowed sampling loop (repeated by FreeInit when enabled), VAE decode
a few frames at a time, optional interpolation, and the writers. Without ping-pong or
interpolation the decoded frames stream into the writers (no clip-sized frame array). The UNet is
restored and motion LoRAs are removed afterwards, also when something fails.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch

from lib_animatediff import output, post, prompt_travel
from lib_animatediff.frame_stream import decoded_frames
from lib_animatediff.freeinit import reinit_noise
from lib_animatediff.options import MAX_IMAGE_SIDE, MAX_STEPS, MAX_WINDOWS_PER_CALL
from lib_animatediff.params import AnimateDiffParams
from lib_animatediff.resolve import HostFacts, resolve
from lib_animatediff.runner.errors import InputError
from lib_animatediff.runner.models import Pipeline
from lib_animatediff.runner.samplers import scheduler_for_motion_module
from lib_animatediff.runner.sampling import (
    FrameConditioning,
    WindowedGuidedDenoiser,
    run_scheduler,
)
from lib_animatediff.runner.text import encode_prompts
from lib_animatediff.windows import WindowPlan
from motion_module import apply_motion_lora, inject
from motion_module.model import MotionModule

DECODE_CHUNK = 8
MAX_SEED = 2**32 - 1


@dataclass(frozen=True)
class SamplingSettings:
    """The image-generation settings of a run (A1111's txt2img fields the runner supports)."""

    prompt: str
    negative_prompt: str = ""
    width: int = 512
    height: int = 512
    steps: int = 20
    cfg_scale: float = 7.5
    sampler: str = "DPM++ 2M"
    seed: int = -1
    windows_per_call: int = 1

    def __post_init__(self) -> None:
        limits = (
            ("steps", 1, MAX_STEPS),
            ("windows_per_call", 1, MAX_WINDOWS_PER_CALL),
            ("width", 8, MAX_IMAGE_SIDE),
            ("height", 8, MAX_IMAGE_SIDE),
        )
        for name, low, high in limits:
            value = getattr(self, name)
            if not isinstance(value, int) or not low <= value <= high:
                raise InputError(f"{name}={value!r}: expected an integer from {low} to {high}")
        if not -1 <= self.seed <= MAX_SEED:
            raise InputError(f"seed={self.seed!r}: expected -1 (random) or 0..{MAX_SEED}")
        if not self.cfg_scale >= 1:
            raise InputError(f"cfg_scale={self.cfg_scale!r}: expected a number >= 1")

    def resolved_seed(self) -> int:
        """The seed, with -1 replaced by a random one."""
        return random.randint(0, MAX_SEED) if self.seed == -1 else self.seed


@dataclass(frozen=True)
class Sampled:
    """Denoised latents ``(N, C, h, w)`` of one run, its seed and the UNet frame evaluations."""

    latents: torch.Tensor
    seed: int
    frame_evaluations: int


@dataclass(frozen=True)
class Rendered:
    """Decoded frames (uint8 ``H x W x 3``) of one run, its seed and the UNet frame evaluations."""

    frames: list[np.ndarray]
    seed: int
    frame_evaluations: int


@dataclass(frozen=True)
class Result:
    """What a run wrote and the values it used."""

    paths: list[Path]
    seed: int
    frames: int
    frame_evaluations: int


def generate(
    pipeline: Pipeline,
    mm: MotionModule,
    params: AnimateDiffParams,
    sampling: SamplingSettings,
    outdir: str | Path,
    *,
    motion_loras: tuple[tuple[str | Path, float], ...] = (),
    progress: bool = True,
) -> Result:
    """Render one video with ``pipeline`` + ``mm`` and write it into ``outdir`` (see module doc).

    The runner has no video source, batch or FILM model folder: :func:`lib_animatediff.resolve.resolve`
    validates the params and names FILM as the optical flow that runs instead."""
    params = resolve(params, HostFacts()).params
    output.preflight(params, outdir, outdir_field="--outdir")
    sampled = sample_latents(pipeline, mm, params, sampling, motion_loras=motion_loras, progress=progress)
    paths, count = write_video(pipeline, mm, sampled, params, sampling, outdir, progress=progress)
    return Result(paths=paths, seed=sampled.seed, frames=count, frame_evaluations=sampled.frame_evaluations)


def write_video(
    pipeline: Pipeline,
    mm: MotionModule,
    sampled: Sampled,
    params: AnimateDiffParams,
    sampling: SamplingSettings,
    outdir: str | Path,
    *,
    progress: bool = True,
) -> tuple[list[Path], int]:
    """Decode the first ``video_length`` frames of ``sampled`` and write them (paths, frames written).

    Frames stream from the VAE into the writers unless ping-pong (closed loop ``A``) or
    interpolation needs the whole clip (:func:`lib_animatediff.post.finish`).
    """
    latents = sampled.latents[: params.video_length or None]
    frames = decoded_frames(
        latents, partial(decode_chunk, pipeline), chunk_size=DECODE_CHUNK, progress=progress
    )
    stem = output.output_stem(outdir, sampled.seed, params.request_id)
    video, count = post.finish(frames, len(latents), params)
    infotext = _infotext(sampling, params, sampled.seed, mm)
    return post.write(video, stem, params.format, params, infotext=infotext), count


def render(
    pipeline: Pipeline,
    mm: MotionModule,
    params: AnimateDiffParams,
    sampling: SamplingSettings,
    *,
    progress: bool = True,
) -> Rendered:
    """Sample and decode all ``params.frame_count`` frames (no trimming, interpolation or files)."""
    sampled = sample_latents(pipeline, mm, params, sampling, progress=progress)
    frames = decode(pipeline, sampled.latents, progress=progress)
    return Rendered(list(frames), sampled.seed, sampled.frame_evaluations)


def sample_latents(
    pipeline: Pipeline,
    mm: MotionModule,
    params: AnimateDiffParams,
    sampling: SamplingSettings,
    *,
    motion_loras: tuple[tuple[str | Path, float], ...] = (),
    progress: bool = True,
) -> Sampled:
    """Check the settings, then sample all ``params.frame_count`` frames with ``mm`` injected."""
    params.validate(pe_length=mm.pe_length)
    factor = pipeline.vae_scale_factor
    for name in ("width", "height"):
        if getattr(sampling, name) % factor:
            raise InputError(f"{name}={getattr(sampling, name)}: must be a multiple of {factor}")
    seed = sampling.resolved_seed()
    conditioning = frame_conditioning(pipeline, sampling, params.frame_count, params)
    generator = torch.Generator().manual_seed(seed)
    noise = initial_noise(pipeline, sampling, params, generator)
    with ExitStack() as stack, torch.no_grad():
        for path, strength in motion_loras:
            stack.callback(apply_motion_lora(mm, path, strength).remove)
        handle = stack.enter_context(inject(pipeline.unet, mm))
        latents, evaluations = sample(
            pipeline,
            handle.set_frames,
            conditioning,
            noise,
            mm,
            params,
            sampling,
            generator,
            progress=progress,
        )
    return Sampled(latents, seed, evaluations)


def sample(
    pipeline: Pipeline,
    set_frames: Callable[[int], None],
    conditioning: tuple[FrameConditioning, FrameConditioning],
    noise: torch.Tensor,
    mm: MotionModule,
    params: AnimateDiffParams,
    sampling: SamplingSettings,
    generator: torch.Generator,
    *,
    progress: bool = True,
) -> tuple[torch.Tensor, int]:
    """Denoised latents and the UNet frame evaluations spent; FreeInit repeats the pass from
    re-initialised noise (``freeinit_iters`` passes in all)."""
    plan = WindowPlan.from_params(params, max_frames_per_call=sampling.windows_per_call * params.batch_size)
    device, dtype = pipeline.unet.device, pipeline.unet.dtype
    passes = params.freeinit_iters if params.freeinit_enable else 1
    start, latents, evaluations = noise, noise, 0
    for index in range(passes):
        scheduler = scheduler_for_motion_module(sampling.sampler, mm)
        if index:
            fresh = (
                torch.randn(noise.shape, generator=generator) if params.freeinit_noise == "fresh" else None
            )
            start = reinit_noise(
                latents.float().cpu(), noise, scheduler.alphas_cumprod, params, fresh_noise=fresh
            )
        denoiser = WindowedGuidedDenoiser(
            pipeline.unet, set_frames, *conditioning, sampling.cfg_scale, plan, scheduler.alphas_cumprod
        )
        latents = run_scheduler(
            scheduler,
            denoiser,
            start.to(device=device, dtype=dtype) * scheduler.init_noise_sigma,
            sampling.steps,
            generator=generator,
            progress=progress,
            description=f"FreeInit pass {index + 1}/{passes}" if passes > 1 else "sampling",
        )
        evaluations += denoiser.frame_evaluations
    return latents, evaluations


def initial_noise(
    pipeline: Pipeline, sampling: SamplingSettings, params: AnimateDiffParams, generator: torch.Generator
) -> torch.Tensor:
    """Seeded unit Gaussian latents ``(N, C, h, w)`` on the CPU, FreeNoise-rescheduled when chosen."""
    factor = pipeline.vae_scale_factor
    shape = (
        params.frame_count,
        pipeline.unet.config.in_channels,
        sampling.height // factor,
        sampling.width // factor,
    )
    noise = torch.randn(shape, generator=generator)
    if params.noise == "freenoise":
        noise = WindowPlan.from_params(params).freenoise(noise, generator)
    return noise


def frame_conditioning(
    pipeline: Pipeline, sampling: SamplingSettings, frames: int, params: AnimateDiffParams
) -> tuple[FrameConditioning, FrameConditioning]:
    """Per-frame conditioning: the prompt with prompt travel (slerp between keyframes), and the negative."""
    schedule = prompt_travel.parse(sampling.prompt, frames)
    texts = list(dict.fromkeys(schedule.frame_prompts(frames)))
    hidden, pooled = encode_prompts(pipeline, [*texts, sampling.negative_prompt])
    device, dtype = pipeline.unet.device, pipeline.unet.dtype
    unique = {"hidden": hidden[:-1]} | ({} if pooled is None else {"pooled": pooled[:-1]})
    if schedule.is_travel:
        index = torch.tensor([texts.index(text) for text in schedule.frame_prompts(frames)])
        per_frame = {name: tensor[index] for name, tensor in unique.items()}
        per_frame = prompt_travel.interpolate(per_frame, schedule, closed=params.prompt_wraps)
        per_frame = {name: tensor.to(device, dtype) for name, tensor in per_frame.items()}
    else:  # one prompt: every frame's row is a view of it (no N-row copy)
        per_frame = {
            name: _rows_view(tensor[:1].to(device, dtype), frames) for name, tensor in unique.items()
        }
    time_ids = None
    if pooled is not None:
        size = [sampling.height, sampling.width]
        time_ids = torch.tensor([[*size, 0, 0, *size]], device=device, dtype=dtype).expand(frames, -1)
    cond = FrameConditioning(per_frame["hidden"], per_frame.get("pooled"), time_ids)
    uncond = FrameConditioning(
        hidden=_rows_view(hidden[-1:].to(device, dtype), frames),
        pooled=None if pooled is None else _rows_view(pooled[-1:].to(device, dtype), frames),
        time_ids=time_ids,
    )
    return cond, uncond


def _rows_view(row: torch.Tensor, frames: int) -> torch.Tensor:
    """``row`` (one row) repeated ``frames`` times as an expanded view."""
    return row.expand(frames, *row.shape[1:])


@torch.no_grad()
def decode_chunk(pipeline: Pipeline, latents: torch.Tensor) -> np.ndarray:
    """A few latents ``(k, 4, h, w)`` to uint8 RGB frames ``(k, H, W, 3)`` on the CPU."""
    vae = pipeline.vae
    image = vae.decode(latents.to(vae.dtype) / vae.config.scaling_factor).sample
    image = (image.float().clamp(-1, 1) + 1) * 127.5
    return image.round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


def decode(pipeline: Pipeline, latents: torch.Tensor, *, progress: bool = True) -> np.ndarray:
    """Latents ``(N, 4, h, w)`` to uint8 RGB frames ``(N, H, W, 3)``, ``DECODE_CHUNK`` frames at a time.

    The result array is allocated first, so decoding more frames only grows that array.
    """
    factor = pipeline.vae_scale_factor
    frames = np.empty((latents.shape[0], latents.shape[2] * factor, latents.shape[3] * factor, 3), np.uint8)
    chunks = decoded_frames(
        latents, partial(decode_chunk, pipeline), chunk_size=DECODE_CHUNK, progress=progress
    )
    for index, frame in enumerate(chunks):
        frames[index] = frame
    return frames


def _infotext(sampling: SamplingSettings, params: AnimateDiffParams, seed: int, mm: MotionModule) -> str:
    lines = [sampling.prompt]
    if sampling.negative_prompt:
        lines.append(f"Negative prompt: {sampling.negative_prompt}")
    settings = (
        f"Steps: {sampling.steps}, Sampler: {sampling.sampler}, CFG scale: {sampling.cfg_scale}, Seed: {seed}, "
        f"Size: {sampling.width}x{sampling.height}, "
        f'AnimateDiff: "{params.to_infotext(mm_hash=getattr(mm, "short_hash", None))}"'
    )
    return "\n".join([*lines, settings])
