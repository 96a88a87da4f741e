"""Saving a finished clip: output names as the original builds them, and all-or-nothing writes.

``output_stem`` gives ``<outdir>/AnimateDiff/<YYYY-MM-DD>/<seq:05>-<seed>[-<request_id>]``; ``save``
writes each requested format next to that stem, from a list of frames or streamed from an iterator
(all formats are fed each frame as it comes, nothing keeps the clip). Every file
(and the PNG frame folder) is first written under a hidden temporary name in the same folder; only
when every format has been written are they renamed into place, so a failure at any point leaves
none of them behind.
"""

from __future__ import annotations

import datetime
import math
import os
import re
import secrets
import shutil
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TypedDict, TypeVar

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from lib_animatediff import writers
from lib_animatediff.budget import output_frame_count
from lib_animatediff.coercion import ParamsError
from lib_animatediff.options import (
    MAX_LOOP_NUMBER,
    MAX_OUTPUT_FRAMES,
    MAX_REQUEST_ID_LENGTH,
    MAX_WEBP_FRAME_MS,
    MIN_GIF_FPS,
    SAVE_FORMATS,
)
from lib_animatediff.params import AnimateDiffParams
from lib_animatediff.writers import OutputOptions

__all__ = ["OutputOptions", "WriteError", "as_rgb_frames", "output_stem", "preflight", "save"]

RgbArray = NDArray[np.uint8]
"""A decoded frame: uint8, ``(H, W, 3)``."""
FrameInput = Image.Image | RgbArray
"""What the writers accept: a PIL image (any mode, written as RGB) or an :data:`RgbArray`."""
Frame = TypeVar("Frame", Image.Image, RgbArray)
"""One clip's frame kind, kept through a step (PIL in, PIL out; arrays in, arrays out)."""

Writer = Callable[..., None]

# Canonical names, file suffixes ("" = a folder) and whole-clip writers, in the original's order.
_WRITERS: dict[str, tuple[str, Writer]] = {
    name: (suffix, writer.write_all) for name, (suffix, writer) in writers.WRITERS.items()
}
_UNSAFE_NAME_CHARS = re.compile(r"[^A-Za-z0-9._-]")


class WriteError(OSError):
    """Writing one output file failed; names the file (the original error is its ``__cause__``)."""

    def __init__(self, path: Path, error: Exception) -> None:
        super().__init__(f"could not write {path}: {error}")
        self.path = path


def sanitize_request_id(request_id: str) -> str:
    """``request_id`` reduced to a safe file-name part: characters outside ``A-Z a-z 0-9 . _ -``
    become ``_``, leading dots are dropped (no ``..``, no hidden files), at most 64 characters."""
    if not isinstance(request_id, str):
        raise ValueError(f"request_id: expected a string, got {request_id!r}")
    return _UNSAFE_NAME_CHARS.sub("_", request_id).lstrip(".")[:MAX_REQUEST_ID_LENGTH]


def next_sequence_number(folder: Path) -> int:
    """A1111's rule: one more than the largest integer before the first ``-`` of any entry's name
    (files and folders; names that do not start with a number are ignored); 0 for an empty folder."""
    numbers = [-1]
    for entry in os.listdir(folder):
        head = os.path.splitext(entry)[0].split("-", 1)[0]
        if head.isdigit():
            numbers.append(int(head))
    return max(numbers) + 1


OUTPUT_SUBFOLDER = "AnimateDiff"


def preflight(
    params: AnimateDiffParams, outdir: str | os.PathLike[str], *, outdir_field: str = "outdir"
) -> None:
    """Check, before sampling, everything the output stage will need: frame durations each chosen
    format can store, the frame count after ping-pong and interpolation, the encoder binary, and
    that the output folder can be created and written. ``ParamsError`` names the field."""
    if "GIF" in params.format and params.fps < MIN_GIF_FPS:
        raise ParamsError(
            "fps", params.fps, f"a GIF frame lasts at most 655.35 s; use fps >= {MIN_GIF_FPS:.4f}"
        )
    if "WEBP" in params.format and 1000 / params.fps > MAX_WEBP_FRAME_MS:
        raise ParamsError("fps", params.fps, f"a WebP frame lasts at most {MAX_WEBP_FRAME_MS} ms")
    written = output_frame_count(params)
    if written > MAX_OUTPUT_FRAMES:
        field = "interp_x" if params.interp != "Off" else "video_length"
        raise ParamsError(
            field,
            getattr(params, field),
            f"would write {written} frames, above the limit of {MAX_OUTPUT_FRAMES}",
        )
    if {"MP4", "WEBM"} & set(params.format):
        try:
            import imageio_ffmpeg

            imageio_ffmpeg.get_ffmpeg_exe()
        except (ImportError, RuntimeError) as error:
            raise ParamsError("format", list(params.format), f"MP4/WEBM need ffmpeg ({error})") from None
    _check_writable(Path(outdir) / OUTPUT_SUBFOLDER, outdir_field, outdir)


def _check_writable(folder: Path, field: str, outdir: str | os.PathLike[str]) -> None:
    """``folder`` exists as a writable directory or can be created (its nearest existing ancestor is one)."""
    existing = folder.absolute()
    while not os.path.lexists(existing) and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise ParamsError(field, str(outdir), f"{existing} is not a folder, so {folder} cannot be created")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ParamsError(field, str(outdir), f"{existing} is not writable")


def output_stem(
    outdir: str | os.PathLike[str],
    seed: int,
    request_id: str = "",
    *,
    date: datetime.date | None = None,
) -> Path:
    """``<outdir>/AnimateDiff/<YYYY-MM-DD>/<seq:05>-<seed>[-<request_id>]`` (folder created).

    One stem serves every format of one video, so they share the sequence number. ``request_id``
    is sanitised (``sanitize_request_id``); an empty result adds no suffix.
    """
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer):
        raise ValueError(f"seed: expected an integer, got {seed!r}")
    day = (date or datetime.date.today()).strftime("%Y-%m-%d")
    folder = Path(outdir) / OUTPUT_SUBFOLDER / day
    folder.mkdir(parents=True, exist_ok=True)
    suffix = sanitize_request_id(request_id)
    name = f"{next_sequence_number(folder):05}-{int(seed)}" + (f"-{suffix}" if suffix else "")
    return folder / name


def as_rgb_frames(frames: Sequence[FrameInput]) -> list[RgbArray]:
    """PIL images (any mode, converted to RGB) or uint8 HxWx3 arrays -> uint8 HxWx3 arrays of one size."""
    if isinstance(frames, str | bytes | np.ndarray) or not isinstance(frames, Sequence):
        raise ValueError(f"frames: expected a list of images, got {type(frames).__name__}")
    if not frames:
        raise ValueError("frames: the list is empty")
    arrays: list[RgbArray] = []
    for index, frame in enumerate(frames):
        arrays.append(rgb_frame(frame, index, arrays[0].shape if arrays else None))
    return arrays


def rgb_frame(frame: object, index: int, shape: tuple[int, ...] | None = None) -> RgbArray:
    """Frame ``index`` (a PIL image or a uint8 HxWx3 array; anything else is refused) as a uint8
    HxWx3 array of ``shape``."""
    if isinstance(frame, Image.Image):
        frame = np.asarray(frame.convert("RGB"))
    if not (isinstance(frame, np.ndarray) and frame.dtype == np.uint8 and frame.ndim == 3):
        raise ValueError(f"frames[{index}]: expected a PIL image or a uint8 HxWx3 array, got {frame!r:.80}")
    if frame.shape[2] != 3 or 0 in frame.shape:
        raise ValueError(f"frames[{index}]: expected shape HxWx3, got {frame.shape}")
    if shape is not None and frame.shape != shape:
        raise ValueError(f"frames[{index}]: size {frame.shape[:2]} differs from frames[0] {shape[:2]}")
    return frame


def _canonical_formats(formats: Sequence[str]) -> list[str]:
    if isinstance(formats, str) or not isinstance(formats, Sequence) or not formats:
        raise ValueError(
            f"formats: expected a non-empty list of names from {', '.join(SAVE_FORMATS)}, got {formats!r}"
        )
    by_lower = {name.lower(): name for name in SAVE_FORMATS}
    chosen = set()
    for name in formats:
        if not isinstance(name, str) or name.lower() not in by_lower:
            raise ValueError(f"formats: unknown format {name!r}; expected {', '.join(SAVE_FORMATS)}")
        chosen.add(by_lower[name.lower()])
    return [name for name in _WRITERS if name in chosen]


def _check_fps_loop(fps: float, loop_number: int) -> None:
    if isinstance(fps, bool) or not isinstance(fps, int | float) or not math.isfinite(fps) or fps <= 0:
        raise ValueError(f"fps: expected a finite number > 0, got {fps!r}")
    if (
        isinstance(loop_number, bool)
        or not isinstance(loop_number, int)
        or not 0 <= loop_number <= MAX_LOOP_NUMBER
    ):
        raise ValueError(f"loop_number: expected an integer in [0, {MAX_LOOP_NUMBER}], got {loop_number!r}")


def target_path(stem: Path, fmt: str) -> Path:
    """Where ``fmt`` is written for ``stem`` (the PNG frames go into the folder ``stem`` itself)."""
    return stem.parent / (stem.name + _WRITERS[fmt][0])


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


_SEQUENCE_STEM = re.compile(r"(\d+)(-.*)?")
MAX_NAME_ATTEMPTS = 100


def renumbered(stem: Path) -> Path | None:
    """``stem`` with its leading sequence number replaced by the folder's next free one (another
    run took the name), or None for a stem without one."""
    match = _SEQUENCE_STEM.fullmatch(stem.name)
    if match is None:
        return None
    number = max(next_sequence_number(stem.parent), int(match.group(1)) + 1)
    return stem.with_name(f"{number:0{len(match.group(1))}d}{match.group(2) or ''}")


def _place(temporary: Path, final: Path) -> None:
    """Move ``temporary`` to ``final`` without ever replacing an existing ``final``
    (``FileExistsError``): a hard link is atomic for files; folders are checked, then renamed."""
    if not temporary.is_dir():
        try:
            os.link(temporary, final)
        except FileExistsError:
            raise FileExistsError(f"{final} appeared while writing; not overwritten") from None
        except OSError:  # no hard links on this file system
            pass
        else:
            temporary.unlink()
            return
    if os.path.lexists(final):
        raise FileExistsError(f"{final} appeared while writing; not overwritten")
    os.replace(temporary, final)


def _commit(targets: dict[str, tuple[Path, Path]]) -> list[Path]:
    """Move every temporary into place and return the final paths. When another run took a name
    meanwhile, the ones already placed go back and a numbered stem moves on to the next free
    number; any other failure removes the ones already placed."""
    if not targets:
        return []
    staged = list(targets.values())
    suffixes = [_WRITERS[fmt][0] for fmt in targets]
    fmt, (_, final) = next(iter(targets.items()))
    stem = final.with_name(final.name[: len(final.name) - len(_WRITERS[fmt][0])])
    finals = [final for _, final in staged]
    for _ in range(MAX_NAME_ATTEMPTS):
        done: list[tuple[Path, Path]] = []
        try:
            for (temporary, _), final in zip(staged, finals, strict=True):
                _place(temporary, final)
                done.append((temporary, final))
            return finals
        except FileExistsError:
            for temporary, final in done:
                os.replace(final, temporary)
            next_stem = renumbered(stem)
            if next_stem is None:
                raise
            stem = next_stem
            finals = [stem.parent / (stem.name + suffix) for suffix in suffixes]
        except BaseException:
            for _, final in done:
                _remove(final)
            raise
    raise FileExistsError(f"no free output name after {MAX_NAME_ATTEMPTS} tries in {finals[0].parent}")


def _targets(
    stem: str | os.PathLike[str],
    formats: Sequence[str],
    fps: float,
    loop_number: int,
    infotext: str,
) -> dict[str, tuple[Path, Path]]:
    """Checks the arguments (``ValueError``) and that no target exists (``FileExistsError``);
    returns per format its hidden temporary name and its final path. Creates the stem's folder."""
    chosen = _canonical_formats(formats)
    _check_fps_loop(fps, loop_number)
    if not isinstance(infotext, str):
        raise ValueError(f"infotext: expected a string, got {infotext!r:.80}")
    stem = Path(stem)
    if not stem.name or stem.name in (".", ".."):
        raise ValueError(f"stem: expected a path with a file name, got {str(stem)!r}")
    stem.parent.mkdir(parents=True, exist_ok=True)
    finals = {fmt: target_path(stem, fmt) for fmt in chosen}
    for _ in range(MAX_NAME_ATTEMPTS):
        taken = [path for path in finals.values() if os.path.lexists(path)]
        if not taken:
            break
        next_stem = renumbered(stem)
        if next_stem is None:
            raise FileExistsError(f"{taken[0]} already exists; not overwritten")
        stem = next_stem
        finals = {fmt: target_path(stem, fmt) for fmt in chosen}
    token = secrets.token_hex(4)
    return {
        fmt: (final.with_name(f".{stem.name}.{token}.tmp{_WRITERS[fmt][0]}"), final)
        for fmt, final in finals.items()
    }


class WriterSettings(TypedDict):
    """The keyword arguments every writer takes."""

    fps: float
    loop_number: int
    infotext: str
    options: OutputOptions


def _settings(fps: float, loop_number: int, infotext: str, options: OutputOptions | None) -> WriterSettings:
    """The writers' keyword arguments (after ``_targets`` checked them)."""
    return WriterSettings(
        fps=fps, loop_number=loop_number, infotext=infotext, options=options or OutputOptions()
    )


@contextmanager
def _noted(final: Path) -> Iterator[None]:
    """Errors of the writer of ``final`` become a ``WriteError`` naming it (interrupts pass)."""
    try:
        yield
    except Exception as error:
        raise WriteError(final, error) from error


def save(
    frames: Sequence[FrameInput] | Iterator[FrameInput],
    stem: str | os.PathLike[str],
    formats: Sequence[str],
    *,
    fps: float,
    loop_number: int = 0,
    infotext: str = "",
    options: OutputOptions | None = None,
) -> list[Path]:
    """Write ``frames`` in each of ``formats`` next to ``stem`` (a path without extension).

    ``frames``: a list of PIL images or uint8 HxWx3 arrays (all checked before anything is
    written, then written format after format), or an iterator yielding them: then every format
    is fed each frame as it comes (streamed: nothing keeps the clip) and each frame is checked
    when it arrives; a bad one stops the writing and leaves nothing behind.
    Formats (case-insensitive): GIF, MP4, WEBP, WEBM, PNG (a folder named ``stem`` with
    ``00000.png``...), TXT (the infotext), Frame (writes nothing: the caller returns its frames).
    ``loop_number``: plays of GIF/WEBP, 0 = forever. ``infotext`` "" embeds no metadata.
    Returns the written paths: videos first in the original's order (GIF, MP4, WEBP, WEBM), then
    the PNG folder and the TXT file. Nothing is written when any format fails; an existing target
    is never overwritten: a stem starting with a sequence number (``output_stem``'s) moves on to
    the next free number, before writing and again when another run took the name meanwhile;
    other stems raise ``FileExistsError``; a failing writer raises :class:`WriteError` naming
    the file (an interrupt passes through unchanged). Bad arguments raise ``ValueError`` first.
    """
    arrays = frames if isinstance(frames, Iterator) else as_rgb_frames(frames)
    targets = _targets(stem, formats, fps, loop_number, infotext)
    settings = _settings(fps, loop_number, infotext, options)
    if isinstance(arrays, Iterator):
        return _save_streamed(arrays, targets, settings)
    staged = list(targets.values())
    try:
        for fmt, (temporary, final) in targets.items():
            with _noted(final):
                _WRITERS[fmt][1](arrays, temporary, **settings)
        written = _commit(targets)
    finally:
        for temporary, _ in staged:
            _remove(temporary)
    return written


def _save_streamed(
    frames: Iterator[FrameInput], targets: dict[str, tuple[Path, Path]], settings: WriterSettings
) -> list[Path]:
    """``save`` of an iterator: one writer per format, each frame checked and appended to all."""
    staged = list(targets.values())
    opened: list[tuple[Path, writers.FrameWriter]] = []
    try:
        for fmt, (temporary, final) in targets.items():
            with _noted(final):
                opened.append((final, writers.WRITERS[fmt][1](temporary, **settings)))
        count, shape = 0, None
        for frame in frames:
            array = rgb_frame(frame, count, shape)
            shape = array.shape
            for final, writer in opened:
                with _noted(final):
                    writer.append(array)
            count += 1
        if not count:
            raise ValueError("frames: the iterator yielded no frame")
        for final, writer in opened:
            with _noted(final):
                writer.close()
        written = _commit(targets)
    except BaseException:
        for _, writer in opened:
            writer.abort()
        raise
    finally:
        for temporary, _ in staged:
            _remove(temporary)
    return written
