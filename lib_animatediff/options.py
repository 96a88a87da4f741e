"""Every option table of AnimateDiff, declared once.

Each enumeration is a ``Literal`` type (for annotations and mypy) and the tuple of its choices in
display order (for UI widgets, API coercion, infotext and the runner CLI). Nothing here imports
torch or the host.
"""

from __future__ import annotations

from typing import Literal, get_args

ClosedLoop = Literal["N", "R-P", "R+P", "A"]
FuseMethod = Literal["pyramid", "flat", "overwrite", "gauss"]
ContextSchedule = Literal["uniform", "static", "batched"]
NoiseType = Literal["default", "freenoise"]
FreeInitFilter = Literal["butterworth", "gaussian", "box", "ideal"]
FreeInitNoise = Literal["reuse", "fresh"]
InterpMethod = Literal["Off", "FILM", "Optical flow"]
InterpBackend = Literal["film", "optical flow"]
SaveFormat = Literal["GIF", "MP4", "WEBP", "WEBM", "PNG", "TXT", "Frame"]
VideoFormat = Literal["GIF", "MP4", "WEBP", "WEBM"]

CLOSED_LOOP_MODES: tuple[ClosedLoop, ...] = get_args(ClosedLoop)
FUSE_METHODS: tuple[FuseMethod, ...] = get_args(FuseMethod)
CONTEXT_SCHEDULES: tuple[ContextSchedule, ...] = get_args(ContextSchedule)
NOISE_TYPES: tuple[NoiseType, ...] = get_args(NoiseType)
FREEINIT_FILTERS: tuple[FreeInitFilter, ...] = get_args(FreeInitFilter)
FREEINIT_NOISE: tuple[FreeInitNoise, ...] = get_args(FreeInitNoise)
INTERP_METHODS: tuple[InterpMethod, ...] = get_args(InterpMethod)
SAVE_FORMATS: tuple[SaveFormat, ...] = get_args(SaveFormat)
VIDEO_FORMATS: tuple[VideoFormat, ...] = get_args(VideoFormat)
"""Animated formats, in the order the API returns their files in ``images``."""
FILE_FORMATS: tuple[SaveFormat, ...] = (*VIDEO_FORMATS, "PNG")
"""Formats that write the frames themselves; a request needs at least one."""
UI_SAVE_FORMATS: tuple[SaveFormat, ...] = tuple(name for name in SAVE_FORMATS if name != "Frame")
"""The UI's and settings' choices: "Frame" (single frames in the API answer) is API-only."""

INTERP_BACKENDS: dict[InterpMethod, InterpBackend] = {"FILM": "film", "Optical flow": "optical flow"}
"""The interpolation backend behind each UI name ("Off" has none)."""

MODEL_SUFFIXES = (".ckpt", ".safetensors", ".pt", ".pth", ".bin")
"""Motion-module files listed in the model folder."""
LORA_SUFFIXES = (".pt", ".ckpt", ".safetensors")
"""Motion-LoRA files A1111's Lora folder offers."""

X264_PRESETS = (
    "ultrafast",
    "superfast",
    "veryfast",
    "faster",
    "fast",
    "medium",
    "slow",
    "slower",
    "veryslow",
    "placebo",
)
"""libx264's presets, fastest first."""
X264_TUNES = ("film", "animation", "grain", "stillimage", "fastdecode", "zerolatency", "psnr", "ssim")
DEFAULT_X264_PRESET = "veryfast"
"""What ``mp4_preset`` "" means: CRF keeps the quality, files grow ~20 %."""
MP4_PRESET_CHOICES = ("", *reversed(X264_PRESETS[:-1]))
"""The settings dropdown (the original's list): "" for the default, then slowest first."""
MP4_TUNE_CHOICES = ("", *X264_TUNES[:3])

MAX_FPS = 1000
MAX_LOOP_NUMBER = 65535
"""GIF and animated WebP store the loop count in 16 bits."""
MAX_FREEINIT_ITERS = 10
MAX_REQUEST_ID_LENGTH = 64
MAX_VIDEO_LENGTH = 100_000
"""Frames per video; the memory budget (``lib_animatediff.budget``) usually refuses far fewer."""
MAX_CONTEXT_BATCH = 128
"""Frames per context window; twice the longest positional encoding (AnimateLCM's 64)."""
MAX_STRIDE = 64
"""Dilation levels; more than log2(frames / context) + 1 are clamped anyway."""
MAX_INTERP_X = 64
MAX_OUTPUT_FRAMES = 10_000
"""Frames a video may have after interpolation and ping-pong."""
MAX_IMAGE_SIDE = 8192
"""Runner ``--width`` / ``--height`` in pixels."""
MAX_STEPS = 1000
MAX_WINDOWS_PER_CALL = 64
MIN_GIF_FPS = 1000 / 655_350
"""A GIF frame lasts at most 65,535 centiseconds."""
MAX_WEBP_FRAME_MS = 2**24 - 1
"""An animated-WebP frame lasts at most 2^24 - 1 ms."""

RUNNER_SAMPLERS = ("Euler", "Euler a", "DDIM", "DPM++ 2M", "LCM")
"""The runner's ``--sampler`` choices (configured in ``runner.samplers``)."""
