"""The API's ``images`` for an AnimateDiff generation: the video files as base64, then the frames."""

from __future__ import annotations

import base64
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lib_animatediff.options import VIDEO_FORMATS


def encode_file(path: Path) -> str:
    """A file's bytes as base64 text (A1111's ``encode_pil_to_base64`` passes strings through)."""
    return base64.b64encode(path.read_bytes()).decode("ascii")


def result_images(
    videos: Sequence[Sequence[Path]], frames: Sequence[Any], formats: Sequence[str]
) -> list[Any]:
    """The API's ``images``: base64 of each video file (GIF, MP4, WEBP, WEBM), then ``frames`` if
    ``Frame`` was asked for (as the original)."""
    encoded = [
        encode_file(path)
        for files in videos
        for kind in VIDEO_FORMATS
        for path in files
        if path.suffix.lower() == f".{kind.lower()}"
    ]
    return encoded + (list(frames) if "Frame" in formats else [])
