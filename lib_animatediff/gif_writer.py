"""A streaming GIF encoder: frames go in one at a time and are written to the file as they come.

Only the previous frame is held (to find what changed and to merge repeats), never the clip. Each
frame is quantised on its own with Pillow's fast octree (a local colour table per frame), or mapped
onto one global palette, optionally with Floyd-Steinberg dithering. Pillow's legacy
``GifImagePlugin.getdata`` supplies the image descriptor, local colour table and LZW data; the
header, loop, comment and per-frame delay blocks are written here (GIF89a). (Pillow's quantiser
and LZW encoder hold the GIL, so a worker thread would not overlap them.)

Like Pillow's own animated-GIF writer, a frame identical to the previous one is merged into it
(summed delay) and a frame that changes only a region is stored as that region.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np
from PIL import GifImagePlugin, Image

PALETTE_SAMPLE_FRAMES = 16  # a streamed global palette is fitted to the first frames
PALETTE_SAMPLE_PIXELS = 1 << 18

Box = tuple[int, int, int, int]


def fit_palette(frames: list[np.ndarray], max_pixels: int = PALETTE_SAMPLE_PIXELS) -> Image.Image:
    """A 256-colour palette (median cut) fitted to pixels sampled evenly from ``frames``."""
    height, width = frames[0].shape[:2]
    step = max(1, math.ceil(math.sqrt(len(frames) * height * width / max_pixels)))
    mosaic = np.concatenate([frame[::step, ::step] for frame in frames], axis=0)
    return Image.fromarray(mosaic).quantize(256, method=Image.Quantize.MEDIANCUT)


def changed_box(previous: np.ndarray, frame: np.ndarray) -> Box | None:
    """``(left, top, right, bottom)`` of the pixels that differ, ``None`` when none do.

    The border rows and columns are compared first: in generated video they almost always change,
    and then the whole frame is the box without comparing the rest.
    """
    height, width = frame.shape[:2]
    borders = (np.s_[0], np.s_[-1], np.s_[:, 0], np.s_[:, -1])
    if all(not np.array_equal(previous[edge], frame[edge]) for edge in borders):
        return (0, 0, width, height)
    diff = (previous != frame).any(axis=2)
    rows, cols = np.flatnonzero(diff.any(axis=1)), np.flatnonzero(diff.any(axis=0))
    if rows.size == 0:
        return None
    return (int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1)


def _colour_table(palette: bytes) -> tuple[bytes, int]:
    """``palette`` padded to a power-of-two number of entries, and that size's 3-bit field."""
    entries = max(2, len(palette) // 3)
    bits = (entries - 1).bit_length()
    return palette + bytes(3 * (2**bits) - len(palette)), bits - 1


def _sub_blocks(data: bytes) -> bytes:
    blocks = b"".join(bytes([len(data[i : i + 255])]) + data[i : i + 255] for i in range(0, len(data), 255))
    return blocks + b"\x00"


@dataclass
class _HeldFrame:
    """The newest frame, not written yet: its duration grows while identical frames follow."""

    image: Image.Image
    box: Box
    duration_ms: int


class GifEncoder:
    """``add(frame, duration_ms)`` per frame (uint8 ``H x W x 3``), then ``close()``.

    ``loop``: the NETSCAPE repeat count (0 = forever, ``None`` = play once, no block); ``comment``:
    bytes for the comment extension (empty = none); ``global_palette``: map every frame onto one
    palette, ``palette`` if given, else fitted to the first ``PALETTE_SAMPLE_FRAMES`` frames (which
    are held until then); ``dither``: Floyd-Steinberg when mapping onto that palette.
    """

    def __init__(
        self,
        file: BinaryIO,
        *,
        loop: int | None,
        comment: bytes = b"",
        global_palette: bool = False,
        palette: Image.Image | None = None,
        dither: bool = True,
    ) -> None:
        self.file = file
        self.loop = loop
        self.comment = comment
        self.global_palette = global_palette
        self.palette = palette
        self.dither = Image.Dither.FLOYDSTEINBERG if dither else Image.Dither.NONE
        self._waiting: list[tuple[np.ndarray, int]] = []  # frames held until the palette is fitted
        self._previous: np.ndarray | None = None
        self._pending: _HeldFrame | None = None
        self._table: bytes | None = None  # the global colour table once the header is written

    def add(self, frame: np.ndarray, duration_ms: int) -> None:
        """Queue one frame shown for ``duration_ms`` (a multiple of 10; GIF delays are centiseconds)."""
        if self.global_palette and self.palette is None:
            self._waiting.append((frame.copy(), duration_ms))
            if len(self._waiting) == PALETTE_SAMPLE_FRAMES:
                self._fit_and_release()
            return
        box = (0, 0, frame.shape[1], frame.shape[0])
        if self._previous is not None and self._pending is not None:
            changed = changed_box(self._previous, frame)
            if changed is None:
                self._pending.duration_ms += duration_ms
                return
            box = changed
        self._write_pending()
        self._previous = frame.copy()
        self._pending = _HeldFrame(self._quantize(frame[box[1] : box[3], box[0] : box[2]]), box, duration_ms)

    def close(self) -> None:
        """Write what is still held and the trailer."""
        if self._waiting:
            self._fit_and_release()
        self._write_pending()
        self.file.write(b";")

    def _fit_and_release(self) -> None:
        self.palette = fit_palette([frame for frame, _ in self._waiting])
        waiting, self._waiting = self._waiting, []
        for frame, duration in waiting:
            self.add(frame, duration)

    def _quantize(self, region: np.ndarray) -> Image.Image:
        image = Image.fromarray(region)
        if self.palette is not None:
            return image.quantize(palette=self.palette, dither=self.dither)
        return image.quantize(256, method=Image.Quantize.FASTOCTREE)

    def _write_pending(self) -> None:
        """Write the held frame (its duration is final once a different frame has come)."""
        if self._pending is None:
            return
        image, box, duration = self._pending.image, self._pending.box, self._pending.duration_ms
        self._pending = None
        palette = bytes(image.getpalette() or [])
        if self._table is None:  # the first frame, always whole
            self._write_header(image.size, palette)
        delay = struct.pack("<H", min(65535, round(duration / 10)))
        self.file.write(b"!\xf9\x04\x00" + delay + b"\x00\x00")  # graphic control: delay only
        local = palette != self._table
        for part in GifImagePlugin.getdata(image, box[:2], include_color_table=local):
            self.file.write(part)

    def _write_header(self, size: tuple[int, int], palette: bytes) -> None:
        """Screen descriptor with the first frame's (or the global) palette as the global table."""
        self._table = palette
        table, bits = _colour_table(palette)
        self.file.write(b"GIF89a" + struct.pack("<HHBBB", *size, 0xF0 | bits, 0, 0) + table)
        if self.loop is not None:
            self.file.write(b"!\xff\x0bNETSCAPE2.0\x03\x01" + struct.pack("<H", self.loop) + b"\x00")
        if self.comment:
            self.file.write(b"!\xfe" + _sub_blocks(self.comment))
