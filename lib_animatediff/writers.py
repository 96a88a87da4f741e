"""Encoders for each output format: frames (uint8 HxWx3 arrays) in, one file or folder out.

Every writer writes to the path it is given (a temporary name chosen by ``output.save``) and nothing
else. The timing, loop and metadata rules the writers share are documented on each function.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, PngImagePlugin

logger = logging.getLogger(__name__)

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
X264_TUNES = ("film", "animation", "grain", "stillimage", "fastdecode", "zerolatency", "psnr", "ssim")
GIFSICLE_TIMEOUT_S = 300
_EXIF_IFD = 0x8769
_USER_COMMENT = 0x9286
_UNICODE_PREFIX = b"UNICODE\x00"


@dataclass(frozen=True)
class OutputOptions:
    """Encoder settings (the original's Settings > AnimateDiff entries, plus our own).

    ``gif_palette``: one global palette computed over all frames (the original's "optimize GIF
    palette"); ``gif_dither``: Floyd-Steinberg dithering when mapping to that palette;
    ``gif_gifsicle``: run ``gifsicle -O3`` afterwards when the binary exists. ``mp4_crf`` 0-51,
    ``mp4_preset`` / ``mp4_tune``: "" or an x264 name. ``webm_crf`` 0-63 (VP9, ours).
    ``webp_quality`` 0-100, ``webp_lossless``.
    """

    gif_palette: bool = False
    gif_dither: bool = True
    gif_gifsicle: bool = False
    mp4_crf: int = 23
    mp4_preset: str = ""
    mp4_tune: str = ""
    webm_crf: int = 32
    webp_quality: int = 80
    webp_lossless: bool = False

    def __post_init__(self) -> None:
        for name, low, high in (("mp4_crf", 0, 51), ("webm_crf", 0, 63), ("webp_quality", 0, 100)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise ValueError(f"{name}: expected an integer in [{low}, {high}], got {value!r}")
        for name, allowed in (("mp4_preset", X264_PRESETS), ("mp4_tune", X264_TUNES)):
            value = getattr(self, name)
            if value != "" and value not in allowed:
                raise ValueError(f"{name}: expected '' or one of {', '.join(allowed)}, got {value!r}")


def frame_durations_ms(count: int, fps: float, tick_ms: int) -> list[int]:
    """Per-frame durations in whole ``tick_ms`` units whose running sum stays within half a tick of
    ``i * 1000 / fps`` (so 8 fps in a GIF's 10 ms ticks alternates 130/120 ms instead of drifting)."""
    ticks_per_frame = 1000.0 / (fps * tick_ms)
    edges = [math.floor(i * ticks_per_frame + 0.5) for i in range(count + 1)]
    return [(edges[i + 1] - edges[i]) * tick_ms for i in range(count)]


def _gif_loop(loop_number: int) -> int | None:
    """NETSCAPE loop count for "play ``loop_number`` times" (0 = forever).

    The count stored in a GIF is the number of *repeats* after the first play (browsers play a GIF
    with count N N+1 times), so N plays are written as N-1, and a single play omits the block.
    """
    if loop_number == 0:
        return 0
    return loop_number - 1 if loop_number > 1 else None


def _global_palette(frames: Sequence[np.ndarray], max_pixels: int = 1 << 18) -> Image.Image:
    """A 256-colour palette (median cut) fitted to pixels sampled evenly from all frames."""
    height, width = frames[0].shape[:2]
    step = max(1, math.ceil(math.sqrt(len(frames) * height * width / max_pixels)))
    mosaic = np.concatenate([frame[::step, ::step] for frame in frames], axis=0)
    return Image.fromarray(mosaic).quantize(256, method=Image.Quantize.MEDIANCUT)


def _gif_images(frames: Sequence[np.ndarray], options: OutputOptions) -> Iterator[Image.Image]:
    if options.gif_palette:
        palette = _global_palette(frames)
        dither = Image.Dither.FLOYDSTEINBERG if options.gif_dither else Image.Dither.NONE
        for frame in frames:
            yield Image.fromarray(frame).quantize(palette=palette, dither=dither)
    else:
        for frame in frames:
            yield Image.fromarray(frame).quantize(256, method=Image.Quantize.FASTOCTREE)


def write_gif(
    frames: Sequence[np.ndarray],
    path: Path,
    *,
    fps: float,
    loop_number: int,
    infotext: str,
    options: OutputOptions,
) -> None:
    """GIF via Pillow. Durations in 10 ms ticks (at least 20 ms: browsers slow shorter delays down to
    100 ms); ``loop_number`` plays (0 = forever); infotext in the comment extension (UTF-8).
    Without ``gif_palette`` each frame gets its own fast-octree palette. Pillow merges identical
    consecutive frames into one with the summed duration."""
    durations = frame_durations_ms(len(frames), fps, 10)
    if min(durations) < 20:
        logger.warning("GIF frames cannot be shorter than 20 ms; %.3g fps is written as 50 fps", fps)
        durations = [max(20, d) for d in durations]
    images = _gif_images(frames, options)
    first = next(images)
    extra: dict[str, object] = {}
    loop = _gif_loop(loop_number)
    if loop is not None:
        extra["loop"] = loop
    if infotext:
        extra["comment"] = infotext.encode("utf-8")
    if options.gif_palette:
        # Written once as the global colour table (no per-frame tables, no per-frame trimming).
        extra["palette"] = bytes(first.getpalette() or [])
        extra["optimize"] = False
    first.save(path, format="GIF", save_all=True, append_images=images, duration=durations, **extra)
    if options.gif_gifsicle:
        _gifsicle(path)


def _gifsicle(path: Path) -> None:
    executable = shutil.which("gifsicle")
    if executable is None:
        logger.warning("gifsicle not found (install it, e.g. apt install gifsicle); GIF left unoptimised")
        return
    optimised = path.with_name(path.name + ".gifsicle")
    try:
        subprocess.run(
            [executable, "--no-warnings", "-O3", str(path), "-o", str(optimised)],
            check=True,
            capture_output=True,
            timeout=GIFSICLE_TIMEOUT_S,
        )
        os.replace(optimised, path)
    finally:
        optimised.unlink(missing_ok=True)


def _even(frame: np.ndarray) -> np.ndarray:
    """Pad odd widths/heights by repeating the last row/column (yuv420p needs even sizes)."""
    height, width = frame.shape[:2]
    if height % 2 == 0 and width % 2 == 0:
        return frame
    return np.pad(frame, ((0, height % 2), (0, width % 2), (0, 0)), mode="edge")


def _metadata_args(tags: dict[str, str]) -> list[str]:
    """``-metadata key=value`` arguments; NUL characters cannot travel in an argument and are dropped."""
    args: list[str] = []
    for key, value in tags.items():
        if value:
            args += ["-metadata", f"{key}={value.replace(chr(0), '')}"]
    return args


def _write_ffmpeg(
    frames: Sequence[np.ndarray], path: Path, *, fps: float, codec: str, output_params: list[str]
) -> None:
    try:
        import imageio.v2 as imageio
        import imageio_ffmpeg  # noqa: F401  (the FFMPEG plugin needs it; fail here with its name)
    except ImportError as error:
        raise RuntimeError(f"writing {path.suffix} needs imageio and imageio-ffmpeg ({error})") from error
    writer = imageio.get_writer(
        path.resolve(),
        format="FFMPEG",
        mode="I",
        fps=fps,
        codec=codec,
        pixelformat="yuv420p",
        quality=None,
        macro_block_size=1,
        ffmpeg_log_level="error",
        output_params=output_params,
    )
    with writer:
        for frame in frames:
            writer.append_data(_even(frame))


def write_mp4(
    frames: Sequence[np.ndarray],
    path: Path,
    *,
    fps: float,
    loop_number: int,
    infotext: str,
    options: OutputOptions,
) -> None:
    """H.264 (libx264, yuv420p; odd sizes padded by one repeated row/column) through imageio's FFMPEG
    plugin; CRF/preset/tune from the options; infotext in the ``comment`` tag. No loop concept."""
    params = ["-crf", str(options.mp4_crf)]
    if options.mp4_preset:
        params += ["-preset", options.mp4_preset]
    if options.mp4_tune:
        params += ["-tune", options.mp4_tune]
    params += _metadata_args({"comment": infotext})
    _write_ffmpeg(frames, path, fps=fps, codec="libx264", output_params=params)


def write_webm(
    frames: Sequence[np.ndarray],
    path: Path,
    *,
    fps: float,
    loop_number: int,
    infotext: str,
    options: OutputOptions,
) -> None:
    """VP9 (libvpx-vp9, constant quality ``webm_crf``, realtime speed) through imageio's FFMPEG
    plugin; infotext in the ``title`` and ``comment`` tags as the original."""
    params = ["-b:v", "0", "-crf", str(options.webm_crf), "-deadline", "realtime", "-cpu-used", "8"]
    params += ["-row-mt", "1"]
    params += _metadata_args({"title": infotext, "comment": infotext})
    _write_ffmpeg(frames, path, fps=fps, codec="libvpx-vp9", output_params=params)


def webp_exif(infotext: str) -> bytes:
    """EXIF block with the infotext as a UNICODE (UTF-16BE) UserComment, as A1111 reads it back."""
    exif = Image.Exif()
    exif.get_ifd(_EXIF_IFD)[_USER_COMMENT] = _UNICODE_PREFIX + infotext.encode("utf-16-be")
    return exif.tobytes()


def read_webp_infotext(image: Image.Image) -> str:
    """The infotext stored by ``webp_exif`` ("" when absent)."""
    comment = image.getexif().get_ifd(_EXIF_IFD).get(_USER_COMMENT, b"")
    if isinstance(comment, bytes) and comment.startswith(_UNICODE_PREFIX):
        return comment[len(_UNICODE_PREFIX) :].decode("utf-16-be")
    return ""


def write_webp(
    frames: Sequence[np.ndarray],
    path: Path,
    *,
    fps: float,
    loop_number: int,
    infotext: str,
    options: OutputOptions,
) -> None:
    """Animated WEBP via Pillow: durations in whole ms, ``loop`` = ``loop_number`` (WebP counts plays,
    0 = forever), quality / lossless from the options, infotext as the EXIF UserComment."""
    images = [Image.fromarray(frame) for frame in frames]
    extra: dict[str, object] = {"exif": webp_exif(infotext)} if infotext else {}
    images[0].save(
        path,
        format="WEBP",
        save_all=True,
        append_images=images[1:],
        duration=frame_durations_ms(len(frames), fps, 1),
        loop=loop_number,
        quality=options.webp_quality,
        lossless=options.webp_lossless,
        **extra,
    )


def write_png_frames(
    frames: Sequence[np.ndarray],
    path: Path,
    *,
    fps: float,
    loop_number: int,
    infotext: str,
    options: OutputOptions,
) -> None:
    """A folder of ``00000.png``, ``00001.png``, ... each with the infotext in its ``parameters`` text
    chunk (iTXt when it is not Latin-1), as A1111 writes it."""
    path.mkdir()
    info = PngImagePlugin.PngInfo()
    if infotext:
        info.add_text("parameters", infotext)
    for index, frame in enumerate(frames):
        Image.fromarray(frame).save(path / f"{index:05}.png", format="PNG", pnginfo=info)


def write_txt(
    frames: Sequence[np.ndarray],
    path: Path,
    *,
    fps: float,
    loop_number: int,
    infotext: str,
    options: OutputOptions,
) -> None:
    """The infotext and a newline, UTF-8."""
    path.write_text(f"{infotext}\n", encoding="utf-8")
