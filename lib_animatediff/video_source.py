"""Reading source frames for ControlNet V2V and img2img batch: a video file or a folder of images.

Paths may come from API requests, so: when the caller gives ``roots`` the resolved path (symlinks
followed) must lie inside one of them; only existing local files are opened (ffmpeg gets
``file:<absolute path>`` with ``-protocol_whitelist file`` and a whitelist of container demuxers,
so neither a URL nor a playlist inside a file can make it read anything else); the
number of frames (``max_frames``) and the total decoded pixels (``max_pixels``) are bounded and
checked before each frame is kept. Every failure is a ``VideoSourceError`` naming the source.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff"})
DEFAULT_MAX_PIXELS = 512 * 512 * 1024  # decoded pixels over all frames (~0.8 GB of RGB)
# Container demuxers ffmpeg may use: playlists (HLS), concat lists and the like could name other files.
FFMPEG_DEMUXERS = "mov,mp4,m4a,3gp,3g2,mj2,matroska,webm,avi,gif,mpegts,mpeg,flv,ogg"


class VideoSourceError(ValueError):
    """A video source or frame folder that cannot be used; the message names it."""


@dataclass(frozen=True)
class SourceFrames:
    """Decoded frames (uint8 HxWx3 RGB), the fps the file declares (None for a folder), where from."""

    frames: list[np.ndarray]
    fps: float | None
    source: Path

    @property
    def count(self) -> int:
        return len(self.frames)


def natural_key(name: str) -> list[int | str]:
    """Sort key that orders ``2.png`` before ``10.png`` (digit runs compared as numbers)."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


def resolve_source(
    path: str | os.PathLike[str], roots: Sequence[str | os.PathLike[str]] | None = None
) -> Path:
    """``path`` resolved (symlinks followed, relative to the working directory); with ``roots``, it
    must be inside one of them. Raises ``VideoSourceError`` when it does not exist or escapes."""
    if not isinstance(path, str | os.PathLike) or not str(path).strip() or "\x00" in str(path):
        raise VideoSourceError(f"source path: expected a non-empty path, got {path!r}")
    try:
        resolved = Path(path).resolve(strict=True)
    except (OSError, RuntimeError) as error:
        raise VideoSourceError(
            f"source path {str(path)!r} does not exist or cannot be resolved ({error})"
        ) from None
    if roots is not None:
        allowed = [Path(root).resolve() for root in roots]
        if not any(resolved.is_relative_to(root) for root in allowed):
            raise VideoSourceError(
                f"source path {str(path)!r} is outside the allowed folders ({', '.join(map(str, allowed))})"
            )
    return resolved


def _check_limits(max_frames: int | None, max_pixels: int) -> None:
    for name, value in (("max_frames", max_frames), ("max_pixels", max_pixels)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ValueError(f"{name}: expected an integer >= 1, got {value!r}")


class _PixelBudget:
    def __init__(self, source: Path, max_pixels: int) -> None:
        self.source, self.max_pixels, self.used = source, max_pixels, 0

    def take(self, width: int, height: int, index: int) -> None:
        self.used += width * height
        if self.used > self.max_pixels:
            raise VideoSourceError(
                f"{self.source}: frame {index} ({width}x{height}) brings the decoded size to {self.used} pixels, "
                f"above the budget of {self.max_pixels}; use fewer or smaller frames"
            )


def list_frame_files(
    folder: str | os.PathLike[str], roots: Sequence[str | os.PathLike[str]] | None = None
) -> list[Path]:
    """Image files (by suffix) directly in ``folder``, naturally sorted; with ``roots``, files whose
    real path leaves the roots (symlinks) are refused."""
    resolved = resolve_source(folder, roots)
    if not resolved.is_dir():
        raise VideoSourceError(f"frame folder {str(folder)!r} is not a directory")
    files = [
        entry
        for entry in resolved.iterdir()
        if entry.suffix.lower() in IMAGE_SUFFIXES and entry.is_file() and not entry.name.startswith(".")
    ]
    if roots is not None:
        for entry in files:
            resolve_source(entry, roots)
    return sorted(files, key=lambda entry: natural_key(entry.name))


def read_frame_folder(
    folder: str | os.PathLike[str],
    *,
    max_frames: int | None = None,
    roots: Sequence[str | os.PathLike[str]] | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> SourceFrames:
    """The first ``max_frames`` images of ``folder`` (natural order) as RGB arrays."""
    _check_limits(max_frames, max_pixels)
    files = list_frame_files(folder, roots)[:max_frames]
    if not files:
        raise VideoSourceError(
            f"frame folder {str(folder)!r} contains no image files ({', '.join(sorted(IMAGE_SUFFIXES))})"
        )
    budget = _PixelBudget(files[0].parent, max_pixels)
    frames = []
    for index, file in enumerate(files):
        try:
            with Image.open(file) as image:
                budget.take(image.width, image.height, index)
                frames.append(np.asarray(image.convert("RGB")))
        except (OSError, UnidentifiedImageError, Image.DecompressionBombError) as error:
            raise VideoSourceError(f"{file}: cannot be read as an image ({error})") from None
    return SourceFrames(frames, None, files[0].parent)


def _opencv_frames(
    path: Path, max_frames: int | None, budget: _PixelBudget, info: dict[str, float | None]
) -> Iterator[np.ndarray]:
    import cv2

    capture = cv2.VideoCapture(str(path))
    try:
        if not capture.isOpened():
            raise VideoSourceError(f"video source {path} cannot be opened by OpenCV")
        fps = capture.get(cv2.CAP_PROP_FPS)
        info["fps"] = float(fps) if fps and fps > 0 else None
        index = 0
        while max_frames is None or index < max_frames:
            ok, frame = capture.read()
            if not ok:
                break
            budget.take(frame.shape[1], frame.shape[0], index)
            index += 1
            yield cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
    finally:
        capture.release()


def _imageio_ffmpeg_frames(
    path: Path, max_frames: int | None, budget: _PixelBudget, info: dict[str, float | None]
) -> Iterator[np.ndarray]:
    import imageio_ffmpeg

    reader = imageio_ffmpeg.read_frames(
        f"file:{path}",
        input_params=["-nostdin", "-protocol_whitelist", "file", "-format_whitelist", FFMPEG_DEMUXERS],
        output_params=["-frames:v", str(max_frames)] if max_frames is not None else [],
    )
    try:
        meta = next(reader)
        info["fps"] = float(meta["fps"]) if meta.get("fps") else None
        width, height = meta["size"]
        for index, raw in enumerate(reader):
            budget.take(width, height, index)
            yield np.frombuffer(raw, np.uint8).reshape(height, width, 3)
    except VideoSourceError:
        raise
    except (OSError, RuntimeError, StopIteration, KeyError, ValueError) as error:
        raise VideoSourceError(
            f"video source {path} cannot be decoded ({str(error).strip()[-300:]})"
        ) from None
    finally:
        reader.close()


def iter_video(
    path: str | os.PathLike[str],
    *,
    max_frames: int | None = None,
    roots: Sequence[str | os.PathLike[str]] | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    backend: str = "ffmpeg",
    info: dict[str, float | None] | None = None,
) -> Iterator[np.ndarray]:
    """The decoded frames of a video file one at a time, up to ``max_frames`` (the path, limits and
    backend are checked at once, the frames decoded as they are asked for); ``info`` receives the
    ``fps`` the file declares. Arguments as :func:`read_video`."""
    _check_limits(max_frames, max_pixels)
    if backend not in ("ffmpeg", "opencv"):
        raise ValueError(f"backend: expected 'ffmpeg' or 'opencv', got {backend!r}")
    source = resolve_source(path, roots)
    if not source.is_file():
        raise VideoSourceError(f"video source {str(path)!r} is not a file")
    try:
        import imageio_ffmpeg  # noqa: F401
    except ImportError:
        backend = "opencv"
    reader = _imageio_ffmpeg_frames if backend == "ffmpeg" else _opencv_frames
    return reader(source, max_frames, _PixelBudget(source, max_pixels), {} if info is None else info)


def count_video_frames(
    path: str | os.PathLike[str],
    *,
    max_frames: int,
    roots: Sequence[str | os.PathLike[str]] | None = None,
    backend: str = "ffmpeg",
) -> int:
    """How many frames a video has, up to ``max_frames``, decoding them one by one and keeping none."""
    return sum(1 for _ in iter_video(path, max_frames=max_frames, roots=roots, backend=backend))


def read_video(
    path: str | os.PathLike[str],
    *,
    max_frames: int | None = None,
    roots: Sequence[str | os.PathLike[str]] | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    backend: str = "ffmpeg",
) -> SourceFrames:
    """Every decoded frame of a video file (up to ``max_frames``; no duplicate dropping, unlike the
    original's ``mpdecimate`` extraction) and the fps the file declares. ``backend``: "ffmpeg"
    (imageio-ffmpeg; OpenCV when imageio-ffmpeg is not installed) or "opencv" (the original's
    "frame extraction method" setting)."""
    info: dict[str, float | None] = {}
    frames = list(
        iter_video(
            path, max_frames=max_frames, roots=roots, max_pixels=max_pixels, backend=backend, info=info
        )
    )
    source = resolve_source(path, roots)
    if not frames:
        raise VideoSourceError(f"video source {source} has no decodable frames")
    return SourceFrames(frames, info.get("fps"), source)
