"""Writers for each output format: frames (uint8 HxWx3 arrays) in, one file or folder out.

Every writer streams: ``append(frame)`` encodes (or pipes) the frame at once and ``close()``
finishes the file, so a clip is never held by a writer (GIF keeps the previous frame, a streamed
global GIF palette the first 16). ``abort()`` stops without finishing. Each writer writes to the
path it is given (a temporary name chosen by ``output``) and nothing else. ``write_<format>(frames,
path, ...)`` writes a whole clip (any iterable of frames) with the same writer. The timing, loop
and metadata rules are documented on each class.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import IO, Any, ClassVar, cast

import numpy as np
from PIL import Image, PngImagePlugin

from lib_animatediff.gif_writer import GifEncoder, fit_palette
from lib_animatediff.options import DEFAULT_X264_PRESET, X264_PRESETS, X264_TUNES
from lib_animatediff.webp_writer import WebpEncoder

logger = logging.getLogger(__name__)

WEBP_METHOD = 0  # libwebp effort 0 (fastest) - 6; Pillow's default for animations
GIFSICLE_TIMEOUT_S = 300
MIN_GIF_DELAY_MS = 20
_EXIF_IFD = 0x8769
_USER_COMMENT = 0x9286
_UNICODE_PREFIX = b"UNICODE\x00"


@dataclass(frozen=True)
class OutputOptions:
    """Encoder settings (the original's Settings > AnimateDiff entries, plus our own).

    ``gif_palette``: one global palette computed over all frames (the original's "optimize GIF
    palette"); ``gif_dither``: Floyd-Steinberg dithering when mapping to that palette;
    ``gif_gifsicle``: run ``gifsicle -O3`` afterwards when the binary exists. ``mp4_crf`` 0-51,
    ``mp4_preset``: "" (= ``DEFAULT_X264_PRESET``) or an x264 name; ``mp4_tune``: "" or an x264 name. ``webm_crf`` 0-63 (VP9, ours).
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


def frame_duration_ms(index: int, fps: float, tick_ms: int) -> int:
    """Duration of frame ``index`` in whole ``tick_ms`` units, chosen so the running sum stays within
    half a tick of ``i * 1000 / fps`` (8 fps in a GIF's 10 ms ticks alternates 130/120 ms instead of
    drifting)."""
    ticks_per_frame = 1000.0 / (fps * tick_ms)
    edges = [math.floor(i * ticks_per_frame + 0.5) for i in (index, index + 1)]
    return (edges[1] - edges[0]) * tick_ms


def _gif_loop(loop_number: int) -> int | None:
    """NETSCAPE loop count for "play ``loop_number`` times" (0 = forever).

    The count stored in a GIF is the number of *repeats* after the first play (browsers play a GIF
    with count N N+1 times), so N plays are written as N-1, and a single play omits the block.
    """
    if loop_number == 0:
        return 0
    return loop_number - 1 if loop_number > 1 else None


@dataclass
class FrameWriter:
    """One output being written: ``append(frame)`` per frame, then ``close()`` (or ``abort()``).

    Subclasses open their output in ``__post_init__``.
    """

    path: Path
    fps: float
    loop_number: int
    infotext: str
    options: OutputOptions
    count: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        """Open the output (nothing by default)."""

    def append(self, frame: np.ndarray) -> None:
        """Write one uint8 ``H x W x 3`` frame (every frame the size of the first)."""
        self._write(frame)
        self.count += 1

    def close(self) -> None:
        """Finish the output."""

    def abort(self) -> None:
        """Stop without finishing (the caller removes what was written)."""

    def _write(self, frame: np.ndarray) -> None:
        raise NotImplementedError

    def prepare(self, frames: Iterable[np.ndarray]) -> None:
        """Called by ``write_all`` with the whole clip before the first frame (no-op by default)."""

    @classmethod
    def write_all(cls, frames: Iterable[np.ndarray], path: Path, **settings: Any) -> None:
        """Write a whole clip with one writer (``settings``: the constructor's keywords)."""
        writer = cls(path, **settings)
        try:
            writer.prepare(frames)
            for frame in frames:
                writer.append(frame)
            writer.close()
        except BaseException:
            writer.abort()
            raise


class _FileWriter(FrameWriter):
    """A writer of one binary file, opened (exclusively) on creation."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self.file = open(self.path, "xb")  # noqa: SIM115 (closed by close/abort)

    def close(self) -> None:
        self.file.close()

    def abort(self) -> None:
        self.file.close()


class GifWriter(_FileWriter):
    """GIF89a, streamed (:mod:`lib_animatediff.gif_writer`). Durations in 10 ms ticks, at least
    20 ms (browsers slow shorter delays down to 100 ms); ``loop_number`` plays (0 = forever);
    infotext in the comment extension (UTF-8). Without ``gif_palette`` each frame gets its own
    fast-octree palette; with it one median-cut palette is fitted to the whole clip (``write_all``
    of a sequence) or to its first 16 frames (streamed). Identical consecutive frames are merged
    into one with the summed duration."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self.encoder = GifEncoder(
            self.file,
            loop=_gif_loop(self.loop_number),
            comment=self.infotext.encode("utf-8"),
            global_palette=self.options.gif_palette,
            dither=self.options.gif_dither,
        )
        self.warned = False

    def prepare(self, frames: Iterable[np.ndarray]) -> None:
        if self.options.gif_palette and isinstance(frames, Sequence) and frames:
            self.encoder.palette = fit_palette(list(frames))

    def _write(self, frame: np.ndarray) -> None:
        duration = frame_duration_ms(self.count, self.fps, 10)
        if duration < MIN_GIF_DELAY_MS and not self.warned:
            logger.warning("GIF frames cannot be shorter than 20 ms; %.3g fps is written as 50 fps", self.fps)
            self.warned = True
        self.encoder.add(frame, max(MIN_GIF_DELAY_MS, duration))

    def close(self) -> None:
        self.encoder.close()
        super().close()
        if self.options.gif_gifsicle:
            _gifsicle(self.path)


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


_FFMETADATA_SPECIALS = ("\\", "=", ";", "#", "\n")


def ffmetadata(tags: dict[str, str]) -> str:
    """``tags`` in ffmpeg's FFMETADATA1 file format (specials escaped with a backslash, NUL dropped).

    Metadata goes to ffmpeg in a file, not as ``-metadata`` arguments: Linux limits one argument to
    128 KiB, and A1111 infotexts with long prompts and many extensions' entries can pass that.
    """
    lines = [";FFMETADATA1"]
    for key, value in tags.items():
        text = value.replace("\x00", "")
        for special in _FFMETADATA_SPECIALS:
            text = text.replace(special, "\\" + special)
        if text:
            lines.append(f"{key}={text}")
    return "\n".join(lines) + "\n"


class _FfmpegWriter(FrameWriter):
    """Raw RGB frames piped to an ffmpeg process (imageio-ffmpeg's binary), started on the first
    frame; yuv420p, odd sizes padded by one repeated row/column. ffmpeg's exit status is checked."""

    codec: ClassVar[str]

    def __post_init__(self) -> None:
        super().__post_init__()
        self.process: subprocess.Popen[bytes] | None = None
        self.log = tempfile.TemporaryFile()  # noqa: SIM115 (ffmpeg's stderr; closed by close/abort)
        self.metadata_file = self.path.with_name(self.path.name + ".ffmetadata")

    def output_params(self) -> list[str]:
        raise NotImplementedError

    def tags(self) -> dict[str, str]:
        """The container's metadata tags."""
        raise NotImplementedError

    def _start(self, height: int, width: int) -> subprocess.Popen:
        try:
            import imageio_ffmpeg
        except ImportError as error:
            raise RuntimeError(f"writing {self.path.suffix} needs imageio-ffmpeg ({error})") from error
        rate = Fraction(self.fps).limit_denominator()
        command = [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-nostdin", "-n"]
        command += ["-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{width}x{height}", "-r", str(rate)]
        command += ["-i", "pipe:0"]
        if self.infotext:
            self.metadata_file.write_text(ffmetadata(self.tags()), encoding="utf-8")
            command += [
                "-f",
                "ffmetadata",
                "-i",
                f"file:{self.metadata_file.resolve()}",
                "-map_metadata",
                "1",
            ]
        command += ["-map", "0:v", "-an", "-c:v", self.codec, "-pix_fmt", "yuv420p", *self.output_params()]
        command.append(f"file:{self.path.resolve()}")
        return subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=self.log)

    def _write(self, frame: np.ndarray) -> None:
        frame = _even(frame)
        if self.process is None:
            self.process = self._start(*frame.shape[:2])
        process = self.process
        pipe = cast(IO[bytes], process.stdin)  # started with stdin=PIPE
        try:
            pipe.write(np.ascontiguousarray(frame).data.cast("B"))
        except OSError as error:  # ffmpeg quit (disk full, bad option): report what it said
            self._finish(process)
            raise RuntimeError(
                f"ffmpeg stopped while writing {self.path}: {self._stderr(process)}"
            ) from error

    def close(self) -> None:
        try:
            if self.process is not None and self._finish(self.process) != 0:
                raise RuntimeError(f"ffmpeg failed writing {self.path}: {self._stderr(self.process)}")
        finally:
            self.log.close()
            self.metadata_file.unlink(missing_ok=True)

    def abort(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self._finish(self.process)
        self.log.close()
        self.metadata_file.unlink(missing_ok=True)

    @staticmethod
    def _finish(process: subprocess.Popen[bytes]) -> int:
        with contextlib.suppress(OSError):
            cast(IO[bytes], process.stdin).close()
        return process.wait()

    def _stderr(self, process: subprocess.Popen[bytes]) -> str:
        self.log.seek(0)
        return self.log.read().decode("utf-8", "replace").strip() or f"exit status {process.returncode}"


class Mp4Writer(_FfmpegWriter):
    """H.264 (libx264): CRF from the options, preset ``mp4_preset`` or ``DEFAULT_X264_PRESET``,
    optional tune; infotext in the ``comment`` tag. No loop concept."""

    codec = "libx264"

    def output_params(self) -> list[str]:
        params = [
            "-crf",
            str(self.options.mp4_crf),
            "-preset",
            self.options.mp4_preset or DEFAULT_X264_PRESET,
        ]
        if self.options.mp4_tune:
            params += ["-tune", self.options.mp4_tune]
        return params

    def tags(self) -> dict[str, str]:
        return {"comment": self.infotext}


class WebmWriter(_FfmpegWriter):
    """VP9 (libvpx-vp9, constant quality ``webm_crf``, realtime speed); infotext in the ``title``
    and ``comment`` tags as the original."""

    codec = "libvpx-vp9"

    def output_params(self) -> list[str]:
        params = ["-b:v", "0", "-crf", str(self.options.webm_crf), "-deadline", "realtime", "-cpu-used", "8"]
        return [*params, "-row-mt", "1"]

    def tags(self) -> dict[str, str]:
        return {"title": self.infotext, "comment": self.infotext}


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


class WebpWriter(_FileWriter):
    """Animated WebP, streamed (:mod:`lib_animatediff.webp_writer`): durations in whole ms,
    ``loop`` = ``loop_number`` (WebP counts plays, 0 = forever), quality / lossless from the
    options at effort ``WEBP_METHOD``, infotext as the EXIF UserComment."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self.encoder = WebpEncoder(
            self.file,
            loop=self.loop_number,
            exif=webp_exif(self.infotext) if self.infotext else b"",
            quality=self.options.webp_quality,
            lossless=self.options.webp_lossless,
            method=WEBP_METHOD,
        )

    def _write(self, frame: np.ndarray) -> None:
        self.encoder.add(frame, frame_duration_ms(self.count, self.fps, 1))

    def close(self) -> None:
        self.encoder.close()
        super().close()


class PngFramesWriter(FrameWriter):
    """A folder of ``00000.png``, ``00001.png``, ... each with the infotext in its ``parameters`` text
    chunk (iTXt when it is not Latin-1), as A1111 writes it."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self.path.mkdir()
        self.info = PngImagePlugin.PngInfo()
        if self.infotext:
            self.info.add_text("parameters", self.infotext)

    def _write(self, frame: np.ndarray) -> None:
        Image.fromarray(frame).save(self.path / f"{self.count:05}.png", format="PNG", pnginfo=self.info)


class TxtWriter(FrameWriter):
    """The infotext and a newline, UTF-8 (written on ``close``)."""

    def _write(self, frame: np.ndarray) -> None:
        pass

    def close(self) -> None:
        self.path.write_text(f"{self.infotext}\n", encoding="utf-8")


# Canonical names, file suffixes ("" = a folder) and writers, in the order the original returns videos.
WRITERS: dict[str, tuple[str, type[FrameWriter]]] = {
    "GIF": (".gif", GifWriter),
    "MP4": (".mp4", Mp4Writer),
    "WEBP": (".webp", WebpWriter),
    "WEBM": (".webm", WebmWriter),
    "PNG": ("", PngFramesWriter),
    "TXT": (".txt", TxtWriter),
}
write_gif = GifWriter.write_all
write_mp4 = Mp4Writer.write_all
write_webp = WebpWriter.write_all
write_webm = WebmWriter.write_all
write_png_frames = PngFramesWriter.write_all
write_txt = TxtWriter.write_all
