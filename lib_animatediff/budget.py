"""How much host memory a request needs, estimated before sampling, and the refusal when it is too much.

Only the buffers that grow with the number of frames are counted; the models and one context
window's activations are the same for 16 frames as for 10,000, and windows bound them. Per
request: the latents (the sampler's copies of the whole clip), the text conditioning (one row per
frame, cond and uncond), the decoded frames the host holds before the writers see them, and what
the writers hold. ``estimate`` is pure arithmetic; ``check`` compares it with a budget, which by
default is the memory the machine has free (:func:`free_memory`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from lib_animatediff.coercion import ParamsError
from lib_animatediff.frame_ops import apply_closed_loop
from lib_animatediff.params import AnimateDiffParams

LATENT_CHANNELS = 4
LATENT_FACTOR = 8  # pixels per latent pixel along each side
LATENT_COPIES = 6
"""Whole-clip float32 latent tensors alive at once: sampler state, noise, the fused prediction
and its weights, the denoised estimate and the previous one (multistep samplers)."""
PROMPT_TOKENS = 77
SD15_CONTEXT_DIM = 768
WRITER_FRAMES_HELD = 16
"""Frames a writer may hold (a streamed GIF's global palette is fitted to the first 16)."""
HOST_DECODED_BYTES_PER_PIXEL = 3 * 4 + 3
"""A1111 keeps the decoded clip as float32 RGB and as 8-bit images."""
STREAMED_DECODE_FRAMES = 8
MIB = 1 << 20
GIB = 1 << 30


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes of host memory a request needs, by part; ``field`` is the request field that makes it grow."""

    latents: int
    conds: int
    decoded_frames: int
    writers: int
    frames: int
    output_frames: int
    field: str
    value: int

    @property
    def total(self) -> int:
        return self.latents + self.conds + self.decoded_frames + self.writers


def output_frame_count(params: AnimateDiffParams) -> int:
    """Frames of the finished video: ping-pong (closed loop ``A``) adds the way back, interpolation
    multiplies."""
    kept = range(params.video_length or params.frame_count)
    frames = len(
        apply_closed_loop(
            kept, params.closed_loop, video_length=params.video_length, batch_size=params.batch_size
        )
    )
    return frames * params.interp_x if params.interp != "Off" else frames


def estimate(
    params: AnimateDiffParams,
    width: int,
    height: int,
    *,
    context_dim: int = SD15_CONTEXT_DIM,
    decoded_bytes_per_pixel: int = HOST_DECODED_BYTES_PER_PIXEL,
    streamed: bool = False,
) -> MemoryEstimate:
    """The memory ``params`` at ``width`` x ``height`` needs. ``streamed``: decoded frames go to the
    writers a few at a time (the runner without ping-pong or interpolation), else the clip is held."""
    frames = params.frame_count
    pixels = width * height
    latent_pixels = math.ceil(width / LATENT_FACTOR) * math.ceil(height / LATENT_FACTOR)
    output_frames = output_frame_count(params)
    holds_clip = not streamed or params.interp != "Off" or params.closed_loop == "A"
    held = output_frames if holds_clip else min(output_frames, STREAMED_DECODE_FRAMES)
    videos = sum(name in ("GIF", "MP4", "WEBP", "WEBM") for name in params.format)
    interpolating = params.interp != "Off" and params.interp_x > 1
    return MemoryEstimate(
        latents=LATENT_COPIES * frames * LATENT_CHANNELS * latent_pixels * 4,
        conds=2 * frames * PROMPT_TOKENS * context_dim * 4,
        decoded_frames=held * pixels * decoded_bytes_per_pixel,
        writers=videos * min(output_frames, WRITER_FRAMES_HELD) * pixels * 3,
        frames=frames,
        output_frames=output_frames,
        field="interp_x" if interpolating else "video_length",
        value=params.interp_x if interpolating else params.video_length,
    )


def free_memory() -> int | None:
    """Bytes of memory available to a new allocation (psutil, else /proc/meminfo), None if unknown."""
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except ImportError:
        pass
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def budget_bytes(budget_mb: float) -> int | None:
    """The budget for a setting in MiB: 0 means the memory free now (None when it cannot be read)."""
    if budget_mb < 0 or not math.isfinite(budget_mb):
        raise ValueError(f"memory budget: expected a number of MiB >= 0 (0 = free memory), got {budget_mb!r}")
    return int(budget_mb * MIB) if budget_mb else free_memory()


def _size(count: int) -> str:
    return f"{count / GIB:.2f} GiB" if count >= GIB else f"{count / MIB:.1f} MiB"


def check(needed: MemoryEstimate, budget: int | None) -> MemoryEstimate:
    """``needed`` if it fits ``budget`` bytes (None: no limit), else ``ParamsError`` naming the field
    that makes it grow, the estimate by part and the budget. Returns ``needed`` for chaining."""
    if budget is None or needed.total <= budget:
        return needed
    parts = ", ".join(
        f"{name} {_size(getattr(needed, attribute))}"
        for name, attribute in (
            ("latents", "latents"),
            ("conditioning", "conds"),
            ("decoded frames", "decoded_frames"),
            ("writers", "writers"),
        )
    )
    raise ParamsError(
        needed.field,
        needed.value,
        f"{needed.frames} frames ({needed.output_frames} written) need about {_size(needed.total)} of memory "
        f"({parts}), more than the {_size(budget)} available; use fewer frames, a smaller size or raise "
        "the AnimateDiff memory budget",
    )
