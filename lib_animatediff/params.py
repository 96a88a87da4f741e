"""AnimateDiff generation parameters: one frozen, validated record from UI, API or infotext.

Fields in positional order (the original's ``AnimateDiffProcess`` order, then ours):

=====================  ==========================  ==================================================
field                  default                     meaning / accepted values
=====================  ==========================  ==================================================
model                  "mm_sd15_v3.safetensors"    motion-module file, relative to the model folder
enable                 False                       AnimateDiff on/off
video_length           0                           frames; 0 = the context size (or a source's count), <= 100000
fps                    8                           playback speed, 0 < fps <= 1000
loop_number            0                           GIF/WEBP loops, 0 = forever, at most 65535
closed_loop            "R-P"                       "N" | "R-P" | "R+P" | "A"
batch_size             16                          context window length (frames per UNet call), 1..128
stride                 1                           number of dilation levels (1 = contiguous), 1..64
overlap                -1                          frames shared by neighbouring windows; -1 = size//4
format                 ("GIF", "PNG")              GIF, MP4, WEBP, WEBM, PNG, TXT, Frame; >= 1 video/PNG
interp                 "Off"                       "Off" | "FILM" | "Optical flow"
interp_x               10                          interpolation factor, 1..64
video_source           None                        server-side video file (feeds ControlNet)
video_path             ""                          server-side folder of frames (feeds ControlNet)
mask_path              ""                          server-side folder of masks (ControlNet batch units)
freeinit_enable        False                       FreeInit on/off
freeinit_filter        "butterworth"               "butterworth" | "gaussian" | "box" | "ideal"
freeinit_ds            0.25                        spatial stop frequency, 0..1
freeinit_dt            0.25                        temporal stop frequency, 0..1
freeinit_iters         3                           FreeInit sampling passes, 1..10
latent_power           1                           img2img: init-latent decay exponent, > 0
latent_scale           32                          img2img: init-latent decay scale, > 0
last_frame             None                        img2img: optional last frame (PIL image or base64)
latent_power_last      1                           img2img: last-frame decay exponent, > 0
latent_scale_last      32                          img2img: last-frame decay scale, > 0
request_id             ""                          API only: file-name suffix, [A-Za-z0-9._-]{0,64}
fuse_method            "pyramid"                   ours: "pyramid" | "flat" | "overwrite" | "gauss"
context_schedule       "uniform"                   ours: "uniform" | "static" | "batched"
noise                  "default"                   ours: "default" | "freenoise"
freeinit_noise         "reuse"                     ours: "reuse" (the original) | "fresh"
=====================  ==========================  ==================================================

The UI's positional list holds the original's first 20 fields, then (img2img only) the 5
latent fields, then our 4 extras; lists without the extras (the original's lengths 20/25)
are accepted too. Every instance is checked on construction; :meth:`AnimateDiffParams.validate`
adds the checks that need the host (frame budget, the motion module's PE length).
Enumerations match exactly, except format names, which match case-insensitively.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from lib_animatediff.coercion import (
    ParamsError,
    as_bool,
    as_int,
    as_number,
    as_optional_str,
    as_str,
    choice,
)
from lib_animatediff.options import (
    CLOSED_LOOP_MODES,
    CONTEXT_SCHEDULES,
    FILE_FORMATS,
    FREEINIT_FILTERS,
    FREEINIT_NOISE,
    FUSE_METHODS,
    INTERP_METHODS,
    MAX_CONTEXT_BATCH,
    MAX_FPS,
    MAX_FREEINIT_ITERS,
    MAX_INTERP_X,
    MAX_LOOP_NUMBER,
    MAX_REQUEST_ID_LENGTH,
    MAX_STRIDE,
    MAX_VIDEO_LENGTH,
    NOISE_TYPES,
    SAVE_FORMATS,
    ClosedLoop,
    ContextSchedule,
    FreeInitFilter,
    FreeInitNoise,
    FuseMethod,
    InterpMethod,
    NoiseType,
    SaveFormat,
)

_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]*")

ORIGINAL_UI_FIELDS = (
    "model", "enable", "video_length", "fps", "loop_number", "closed_loop", "batch_size", "stride",
    "overlap", "format", "interp", "interp_x", "video_source", "video_path", "mask_path",
    "freeinit_enable", "freeinit_filter", "freeinit_ds", "freeinit_dt", "freeinit_iters",
)  # fmt: skip
LATENT_FIELDS = ("latent_power", "latent_scale", "last_frame", "latent_power_last", "latent_scale_last")
EXTRA_FIELDS = ("fuse_method", "context_schedule", "noise", "freeinit_noise")
UI_FIELDS_TXT2IMG = ORIGINAL_UI_FIELDS + EXTRA_FIELDS
UI_FIELDS_IMG2IMG = ORIGINAL_UI_FIELDS + LATENT_FIELDS + EXTRA_FIELDS
# Internal state of the original that its API has accepted since #530; accepted and ignored.
IGNORED_API_KEYS = ("is_i2i_batch", "video_default", "prompt_scheduler")
INFOTEXT_PREFIX = "AnimateDiff"


def _as_formats(field: str, value: Any) -> tuple[SaveFormat, ...]:
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise ParamsError(field, value, f"expected a list of format names from {', '.join(SAVE_FORMATS)}")
    canonical = {name.lower(): name for name in SAVE_FORMATS}
    names: list[SaveFormat] = []
    for item in value:
        if not isinstance(item, str) or item.lower() not in canonical:
            raise ParamsError(field, value, f"unknown format {item!r}; expected {', '.join(SAVE_FORMATS)}")
        if canonical[item.lower()] not in names:
            names.append(canonical[item.lower()])
    if not set(names) & set(FILE_FORMATS):
        raise ParamsError(field, value, f"select at least one of {', '.join(FILE_FORMATS)}")
    return tuple(names)


def _as_image(field: str, value: Any) -> Any:
    """``last_frame`` stays opaque here: None, a base64 string or a PIL image (decoded by the host)."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        return value
    from PIL import Image

    if isinstance(value, Image.Image):
        return value
    raise ParamsError(field, type(value).__name__, "expected a PIL image, a base64 string or null")


_COERCE = {
    "model": as_str,
    "enable": as_bool,
    "video_length": as_int,
    "fps": as_number,
    "loop_number": as_int,
    "closed_loop": choice(CLOSED_LOOP_MODES),
    "batch_size": as_int,
    "stride": as_int,
    "overlap": as_int,
    "format": _as_formats,
    "interp": choice(INTERP_METHODS),
    "interp_x": as_int,
    "video_source": as_optional_str,
    "video_path": as_str,
    "mask_path": as_str,
    "freeinit_enable": as_bool,
    "freeinit_filter": choice(FREEINIT_FILTERS),
    "freeinit_ds": as_number,
    "freeinit_dt": as_number,
    "freeinit_iters": as_int,
    "latent_power": as_number,
    "latent_scale": as_number,
    "last_frame": _as_image,
    "latent_power_last": as_number,
    "latent_scale_last": as_number,
    "request_id": as_str,
    "fuse_method": choice(FUSE_METHODS),
    "context_schedule": choice(CONTEXT_SCHEDULES),
    "noise": choice(NOISE_TYPES),
    "freeinit_noise": choice(FREEINIT_NOISE),
}

# (field, lowest, highest, lowest allowed itself) for the range checks done on construction.
_RANGES = (
    ("video_length", 0, MAX_VIDEO_LENGTH, True),
    ("fps", 0, MAX_FPS, False),
    ("loop_number", 0, MAX_LOOP_NUMBER, True),
    ("batch_size", 1, MAX_CONTEXT_BATCH, True),
    ("stride", 1, MAX_STRIDE, True),
    ("overlap", -1, MAX_CONTEXT_BATCH, True),
    ("interp_x", 1, MAX_INTERP_X, True),
    ("freeinit_ds", 0, 1, True),
    ("freeinit_dt", 0, 1, True),
    ("freeinit_iters", 1, MAX_FREEINIT_ITERS, True),
    ("latent_power", 0, None, False),
    ("latent_scale", 0, None, False),
    ("latent_power_last", 0, None, False),
    ("latent_scale_last", 0, None, False),
)


@dataclass(frozen=True)
class AnimateDiffParams:
    """One generation's AnimateDiff settings (see the module docstring for the fields)."""

    model: str = "mm_sd15_v3.safetensors"
    enable: bool = False
    video_length: int = 0
    fps: int | float = 8
    loop_number: int = 0
    closed_loop: ClosedLoop = "R-P"
    batch_size: int = 16
    stride: int = 1
    overlap: int = -1
    format: tuple[SaveFormat, ...] = ("GIF", "PNG")
    interp: InterpMethod = "Off"
    interp_x: int = 10
    video_source: str | None = None
    video_path: str = ""
    mask_path: str = ""
    freeinit_enable: bool = False
    freeinit_filter: FreeInitFilter = "butterworth"
    freeinit_ds: float = 0.25
    freeinit_dt: float = 0.25
    freeinit_iters: int = 3
    latent_power: float = 1
    latent_scale: float = 32
    last_frame: Any = None
    latent_power_last: float = 1
    latent_scale_last: float = 32
    request_id: str = ""
    fuse_method: FuseMethod = "pyramid"
    context_schedule: ContextSchedule = "uniform"
    noise: NoiseType = "default"
    freeinit_noise: FreeInitNoise = "reuse"

    FIELDS: ClassVar[tuple[str, ...]] = tuple(_COERCE)

    def __post_init__(self) -> None:
        for name, coerce in _COERCE.items():
            object.__setattr__(self, name, coerce(name, getattr(self, name)))
        for name, low, high, inclusive in _RANGES:
            value = getattr(self, name)
            if value < low or (value == low and not inclusive) or (high is not None and value > high):
                bound = f"{'>=' if inclusive else '>'} {low}" + (
                    f" and <= {high}" if high is not None else ""
                )
                raise ParamsError(name, value, f"must be {bound}")
        if self.overlap >= self.batch_size:
            raise ParamsError("overlap", self.overlap, f"must be smaller than batch_size ({self.batch_size})")
        if len(self.request_id) > MAX_REQUEST_ID_LENGTH or not _REQUEST_ID.fullmatch(self.request_id):
            raise ParamsError(
                "request_id", self.request_id, f"use at most {MAX_REQUEST_ID_LENGTH} of A-Z a-z 0-9 . _ -"
            )
        if self.request_id and not self.request_id.strip("."):
            raise ParamsError("request_id", self.request_id, "must not consist of dots only")
        if self.enable and not self.model:
            raise ParamsError("model", self.model, "no motion module selected")

    @property
    def frame_count(self) -> int:
        """Frames generated (the original runs at least one full context): ``max(video_length, batch_size)``."""
        return max(self.video_length, self.batch_size)

    @property
    def prompt_wraps(self) -> bool:
        """Prompt travel wraps last → first only for R+P / A, and only when frames exceed the context."""
        return self.closed_loop in ("R+P", "A") and self.video_length > self.batch_size

    def validate(
        self,
        *,
        max_frames: int | None = None,
        pe_length: int | None = None,
        max_output_frames: int | None = None,
    ) -> AnimateDiffParams:
        """Checks that need the host: frame budget, the motion module's PE length, output budget.

        Returns ``self`` so calls can be chained; raises :class:`ParamsError`.
        """
        if max_frames is not None and self.video_length > max_frames:
            raise ParamsError(
                "video_length", self.video_length, f"exceeds the maximum of {max_frames} frames"
            )
        if max_frames is not None and self.batch_size > max_frames:
            raise ParamsError("batch_size", self.batch_size, f"exceeds the maximum of {max_frames} frames")
        if pe_length is not None and self.batch_size > pe_length:
            raise ParamsError(
                "batch_size",
                self.batch_size,
                f"the motion module handles at most {pe_length} frames per window; lower the context batch size",
            )
        if max_output_frames is not None and self.interp != "Off":
            total = self.frame_count * self.interp_x
            if total > max_output_frames:
                raise ParamsError(
                    "interp_x",
                    self.interp_x,
                    f"would write {total} frames, above the limit of {max_output_frames}",
                )
        return self

    # ---- construction -------------------------------------------------------------------------
    @classmethod
    def from_ui(cls, args: Sequence[Any], *, is_img2img: bool) -> AnimateDiffParams:
        """From the accordion's positional values (with or without our 4 extras)."""
        layout = UI_FIELDS_IMG2IMG if is_img2img else UI_FIELDS_TXT2IMG
        without_extras = len(layout) - len(EXTRA_FIELDS)
        if len(args) not in (len(layout), without_extras):
            tab = "img2img" if is_img2img else "txt2img"
            raise ParamsError(
                "args", f"{len(args)} values", f"{tab} expects {without_extras} or {len(layout)}"
            )
        return cls(**dict(zip(layout, args, strict=False)))

    @classmethod
    def from_api(
        cls, data: Mapping[str, Any] | Sequence[Any], *, default_format: Sequence[str] | None = None
    ) -> AnimateDiffParams:
        """From an API request's dict (or a list in constructor order); missing keys take defaults.

        ``default_format`` is the host's "default save formats" setting, used when ``format`` is absent.
        """
        if isinstance(data, Mapping):
            unknown = sorted(set(data) - set(cls.FIELDS) - set(IGNORED_API_KEYS), key=str)
            if unknown:
                raise ParamsError(
                    "args", ", ".join(map(str, unknown)), f"unknown key(s); accepted: {', '.join(cls.FIELDS)}"
                )
            values = {key: value for key, value in data.items() if key in cls.FIELDS}
        elif isinstance(data, Sequence) and not isinstance(data, str):
            if len(data) > len(cls.FIELDS):
                raise ParamsError("args", f"{len(data)} values", f"at most {len(cls.FIELDS)} are accepted")
            values = dict(zip(cls.FIELDS, data, strict=False))
        else:
            raise ParamsError("args", data, "expected an object with AnimateDiff fields")
        if "format" not in values and default_format is not None:
            values["format"] = default_format
        return cls(**values)

    def to_api(self) -> dict[str, Any]:
        """A JSON-friendly dict that :meth:`from_api` turns back into an equal instance."""
        data = dataclasses.asdict(self)
        data["format"] = list(self.format)
        return data

    def to_ui(self, *, is_img2img: bool) -> list[Any]:
        """The accordion's positional values (inverse of :meth:`from_ui`)."""
        layout = UI_FIELDS_IMG2IMG if is_img2img else UI_FIELDS_TXT2IMG
        return [list(self.format) if name == "format" else getattr(self, name) for name in layout]

    # ---- infotext -------------------------------------------------------------------------------
    def to_infotext(
        self, *, mm_hash: str | None = None, version: str | None = None, is_img2img: bool = False
    ) -> str:
        """The value of the ``AnimateDiff`` infotext entry, the original's ``k: v, ...`` form plus ours."""
        keys = ["model", "video_length", "fps", "loop_number", "closed_loop", "batch_size", "stride"]
        keys += ["overlap", "interp", "interp_x", "freeinit_enable"]
        items = [(key, getattr(self, key)) for key in keys]
        if self.request_id:
            items.append(("request_id", self.request_id))
        if mm_hash:
            items.append(("mm_hash", mm_hash[:8]))
        if is_img2img:
            items += [(key, getattr(self, key)) for key in LATENT_FIELDS if key != "last_frame"]
        if self.freeinit_enable:
            keys = ["freeinit_filter", "freeinit_ds", "freeinit_dt", "freeinit_iters", "freeinit_noise"]
            items += [(key, getattr(self, key)) for key in keys]
        items += [(key, getattr(self, key)) for key in ("fuse_method", "context_schedule", "noise")]
        if version:
            items.append(("version", version))
        return ", ".join(f"{key}: {value}" for key, value in items)

    @classmethod
    def from_infotext(cls, text: str) -> AnimateDiffParams:
        """Parameters from an infotext value (``mm_hash`` and ``version`` are ignored); enabled."""
        fields = parse_infotext(text)
        values: dict[str, Any] = {key: value for key, value in fields.items() if key in cls.FIELDS}
        return cls(enable=True, **values)


def parse_infotext(text: str) -> dict[str, str]:
    """Splits ``[AnimateDiff: ]["]k: v, k: v["]`` into a dict of strings, as the original's paste does."""
    value = text.strip()
    if value.startswith(f"{INFOTEXT_PREFIX}:"):
        value = value[len(INFOTEXT_PREFIX) + 1 :].strip()
    if len(value) >= 2 and value[0] == value[-1] == '"':
        value = value[1:-1]
    fields: dict[str, str] = {}
    for item in value.split(", "):
        key, sep, field_value = item.partition(": ")
        if not sep or not key:
            raise ParamsError("infotext", item, "expected 'name: value'")
        fields[key] = field_value
    return fields
