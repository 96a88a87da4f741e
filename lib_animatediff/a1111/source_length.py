"""``video_length`` 0 with a video source: the video becomes as long as the source.

The source is the ``video_path`` folder of frames when given, else the ``video_source`` file (the
original's priority). Without either, 0 means one context window (``batch_size`` frames). As in the
original, a source shorter than the context also shortens the context to its length.

Paths of API requests may only lie inside A1111's data and models folders (symlinks followed); UI
requests read the local user's own files and Gradio's uploads, so they are not confined.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

from lib_animatediff import video_source
from lib_animatediff.coercion import ParamsError
from lib_animatediff.options import MAX_VIDEO_LENGTH
from lib_animatediff.params import AnimateDiffParams

logger = logging.getLogger(__name__)


def allowed_roots(p: Any) -> list[Path] | None:
    """Folders a request's source may lie in: A1111's data and models folders for the API, else anywhere."""
    if not getattr(p, "is_api", False):
        return None
    from modules import paths

    return [Path(paths.data_path), Path(paths.models_path)]


def count_source_frames(
    params: AnimateDiffParams,
    *,
    roots: list[Path] | None,
    max_frames: int | None = None,
    backend: str = "ffmpeg",
) -> tuple[str, int] | None:
    """``(field, frames)`` of the source giving the frames (``video_path`` first), or None without one.

    A video is decoded frame by frame (none kept) up to one more than ``max_frames`` (or
    ``MAX_VIDEO_LENGTH``), enough to tell it is too long. Raises
    ``ParamsError`` naming the field for a missing, unreadable, empty or disallowed source.
    """
    field = "video_path" if params.video_path else "video_source" if params.video_source else None
    if field is None:
        return None
    value = getattr(params, field)
    try:
        if field == "video_path":
            count = len(video_source.list_frame_files(value, roots))
        else:
            limit = (max_frames or MAX_VIDEO_LENGTH) + 1
            count = video_source.count_video_frames(value, max_frames=limit, roots=roots, backend=backend)
    except video_source.VideoSourceError as error:
        raise ParamsError(field, value, str(error)) from None
    if count == 0:
        raise ParamsError(field, value, "contains no image files")
    return field, count


def resolve_video_length(
    params: AnimateDiffParams,
    p: Any,
    *,
    max_frames: int | None = None,
    backend: str = "ffmpeg",
) -> AnimateDiffParams:
    """``params`` with ``video_length`` 0 replaced by the source's frame count (or the context size)."""
    if params.video_length != 0:
        return params
    found = count_source_frames(params, roots=allowed_roots(p), max_frames=max_frames, backend=backend)
    if found is None:
        return dataclasses.replace(params, video_length=params.batch_size)
    field, count = found
    max_frames = max_frames or MAX_VIDEO_LENGTH
    if count > max_frames:
        raise ParamsError(
            field,
            getattr(params, field),
            f"has more than {max_frames} frames, the maximum per video; set video_length to use its first frames",
        )
    logger.info("Video length 0: using the %d frames of %s.", count, field)
    return dataclasses.replace(params, video_length=count, batch_size=min(params.batch_size, count))
