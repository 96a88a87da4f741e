"""A streaming animated-WebP encoder: each frame is encoded on its own and written as it comes.

libwebp's animation encoder (Pillow's ``save_all``) keeps every encoded frame until the end and
tries several candidate encodings per frame (key frame or sub-frame, each disposal). Here each frame
is one key frame encoded by Pillow's still-image encoder and wrapped in the RIFF container of the
WebP container specification: ``RIFF``/``WEBP``, ``VP8X`` (animation, EXIF flags), ``ANIM``
(background, loop count), one ``ANMF`` per frame (position, size, duration, no blending), and the
``EXIF`` chunk last. The RIFF size is patched on ``close``, so the file must be seekable.
"""

from __future__ import annotations

import io
import struct
from typing import BinaryIO

import numpy as np
from PIL import Image

from lib_animatediff.options import MAX_WEBP_FRAME_MS

_VP8X_ANIMATION = 0x02
_VP8X_EXIF = 0x08
_FRAME_DATA_CHUNKS = (b"ALPH", b"VP8 ", b"VP8L")
_NO_BLEND = 0x02


def chunk(fourcc: bytes, payload: bytes) -> bytes:
    """A RIFF chunk: FourCC, little-endian size, payload, a pad byte when the size is odd."""
    return fourcc + struct.pack("<I", len(payload)) + payload + b"\x00" * (len(payload) & 1)


def _uint24(value: int) -> bytes:
    return struct.pack("<I", value)[:3]


def frame_bitstream(frame: np.ndarray, *, quality: int, lossless: bool, method: int) -> bytes:
    """The ``ALPH``/``VP8 ``/``VP8L`` chunks of ``frame`` encoded as a still WebP."""
    buffer = io.BytesIO()
    Image.fromarray(frame).save(buffer, format="WEBP", quality=quality, lossless=lossless, method=method)
    data = buffer.getvalue()
    parts, offset = [], 12  # after "RIFF" size "WEBP"
    while offset + 8 <= len(data):
        fourcc = data[offset : offset + 4]
        size = struct.unpack("<I", data[offset + 4 : offset + 8])[0]
        end = offset + 8 + size + (size & 1)
        if fourcc in _FRAME_DATA_CHUNKS:
            parts.append(data[offset:end])
        offset = end
    return b"".join(parts)


class WebpEncoder:
    """``add(frame, duration_ms)`` per frame (uint8 ``H x W x 3``, all one size), then ``close()``.

    ``loop``: plays (0 = forever); ``exif``: an EXIF block (empty = none); ``quality`` 0-100,
    ``lossless`` and ``method`` (0 fastest - 6 smallest) as in Pillow's WebP encoder.
    """

    def __init__(
        self,
        file: BinaryIO,
        *,
        loop: int,
        exif: bytes = b"",
        quality: int = 80,
        lossless: bool = False,
        method: int = 0,
    ) -> None:
        self.file = file
        self.loop = loop
        self.exif = exif
        self.quality, self.lossless, self.method = quality, lossless, method
        self._start: int | None = None

    def add(self, frame: np.ndarray, duration_ms: int) -> None:
        """Encode and write one frame shown for ``duration_ms``."""
        height, width = frame.shape[:2]
        if self._start is None:
            self._write_header(width, height)
        header = _uint24(0) + _uint24(0) + _uint24(width - 1) + _uint24(height - 1)
        header += _uint24(min(MAX_WEBP_FRAME_MS, duration_ms)) + bytes([_NO_BLEND])
        self.file.write(
            chunk(
                b"ANMF",
                header
                + frame_bitstream(frame, quality=self.quality, lossless=self.lossless, method=self.method),
            )
        )

    def close(self) -> None:
        """Append the EXIF chunk and patch the RIFF size."""
        if self._start is None:
            raise ValueError("an animated WebP needs at least one frame")
        if self.exif:
            self.file.write(chunk(b"EXIF", self.exif))
        end = self.file.tell()
        self.file.seek(self._start + 4)
        self.file.write(struct.pack("<I", end - self._start - 8))
        self.file.seek(end)

    def _write_header(self, width: int, height: int) -> None:
        self._start = self.file.tell()
        flags = _VP8X_ANIMATION | (_VP8X_EXIF if self.exif else 0)
        vp8x = bytes([flags]) + b"\x00" * 3 + _uint24(width - 1) + _uint24(height - 1)
        anim = struct.pack("<IH", 0, self.loop)  # background: transparent black (as Pillow)
        self.file.write(b"RIFF\x00\x00\x00\x00WEBP" + chunk(b"VP8X", vp8x) + chunk(b"ANIM", anim))
