"""One step from the request's params to the run: ``resolve(params, facts) -> ResolvedRun``.

Every decision that rewrites the params before sampling is made here, in this order, once:

1. an img2img batch (``facts.batch_frames``): as many frames as images (fewer when ``video_length``
   asks for fewer), a context no longer than that, the overlap below the context, and the batch's
   folder as ``video_path`` when no source is set (so ControlNet units get the same frames);
2. ``video_length`` 0: the frames of the source (``video_path`` before ``video_source``, as the
   original), else one context window; a source shorter than the context shortens the context;
3. ControlNet batch units (``facts.unit_frames``, and the source for units fed by it): the shortest
   bounds the video (an automatic length becomes its count, a given one is capped to it);
4. validation against the host's frame limit, and the interpolation that really runs (FILM without
   its model file is named as optical flow).

The video source is counted at most once, frame by frame without keeping frames: when its length is
needed or when ControlNet units need its frames (``facts.source_frames_for``); the units' frames
folder is written later, one decoded frame at a time (:mod:`lib_animatediff.a1111.controlnet`).
Errors are ``ParamsError`` naming the field; nothing of the host is touched.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from lib_animatediff import post, video_source
from lib_animatediff.coercion import ParamsError
from lib_animatediff.options import MAX_VIDEO_LENGTH
from lib_animatediff.params import AnimateDiffParams
from lib_animatediff.windows import WindowPlan

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class HostFacts:
    """What the host knows before a run that the video's params depend on.

    ``batch_frames`` / ``batch_folder``: an img2img batch's image count and input folder.
    ``unit_frames``: ``(unit index, frames)`` of ControlNet batch units with folders of their own.
    ``source_frames_for``: the index of the first ControlNet unit that needs the video's frames.
    ``roots``: folders a source may lie in (None: anywhere). ``max_frames``: the host's frame limit.
    """

    batch_frames: int | None = None
    batch_folder: str | None = None
    unit_frames: tuple[tuple[int, int], ...] = ()
    source_frames_for: int | None = None
    roots: Sequence[Path] | None = None
    max_frames: int | None = None
    backend: str = "ffmpeg"
    film_dirs: tuple[Path, ...] = ()
    max_frames_per_call: int | None = None


@dataclass(frozen=True)
class ResolvedRun:
    """The params a run uses (validated), its window plan, and the source's frame count when counted."""

    params: AnimateDiffParams
    plan: WindowPlan
    source_count: int | None = None  # frames of the source that gave or bounded the video


def resolve(params: AnimateDiffParams, facts: HostFacts) -> ResolvedRun:
    """The run of ``params`` on a host with ``facts`` (see the module docstring)."""
    if facts.batch_frames is not None:
        params = _fit_batch(params, facts.batch_frames, facts.batch_folder)
    automatic_length = params.video_length == 0
    source_field, count = _read_source(params, facts, automatic_length)
    if automatic_length:
        params = _length_from_source(params, source_field, count, facts.max_frames)
    params = _fit_units(params, facts, count, automatic_length)
    params = post.interpolation_that_runs(params.validate(max_frames=facts.max_frames), facts.film_dirs)
    plan = WindowPlan.from_params(params, max_frames_per_call=facts.max_frames_per_call)
    return ResolvedRun(params, plan, count)


def _fit_batch(params: AnimateDiffParams, count: int, folder: str | None) -> AnimateDiffParams:
    length = params.video_length if 0 < params.video_length <= count else count
    context = min(params.batch_size, length)
    overlap = params.overlap if params.overlap < context else context - 1
    video_path = params.video_path
    if not params.video_path and not params.video_source and folder is not None:
        video_path = folder
    return dataclasses.replace(
        params, video_length=length, batch_size=context, overlap=overlap, video_path=video_path
    )


def _read_source(
    params: AnimateDiffParams, facts: HostFacts, automatic_length: bool
) -> tuple[str | None, int | None]:
    """``(field, frame count)`` of the source, counted only when something needs it.

    A folder's files are counted; a video is decoded frame by frame keeping none, up to one more
    than the frame limit when its length decides the video's (enough to tell it is too long), else
    up to ``video_length``."""
    needed = automatic_length or facts.source_frames_for is not None
    source_field = "video_path" if params.video_path else "video_source" if params.video_source else None
    if not needed or source_field is None:
        if facts.source_frames_for is not None:
            raise ParamsError(
                "video_source",
                None,
                f"ControlNet unit {facts.source_frames_for} has no image and AnimateDiff has neither "
                "video_path nor video_source",
            )
        return None, None
    value = getattr(params, source_field)
    try:
        if source_field == "video_path":
            return source_field, len(video_source.list_frame_files(value, facts.roots))
        limit = (facts.max_frames or MAX_VIDEO_LENGTH) + 1 if automatic_length else params.video_length
        count = video_source.count_video_frames(
            value, max_frames=limit, roots=facts.roots, backend=facts.backend
        )
    except video_source.VideoSourceError as error:
        raise ParamsError(source_field, value, str(error)) from None
    if not count:
        raise ParamsError(source_field, value, "has no decodable frames")
    return source_field, count


def _length_from_source(
    params: AnimateDiffParams, source_field: str | None, count: int | None, max_frames: int | None
) -> AnimateDiffParams:
    if source_field is None or count is None:
        return dataclasses.replace(params, video_length=params.batch_size)
    value = getattr(params, source_field)
    if count == 0:
        raise ParamsError(source_field, value, "contains no image files")
    max_frames = max_frames or MAX_VIDEO_LENGTH
    if count > max_frames:
        raise ParamsError(
            source_field,
            value,
            f"has more than {max_frames} frames, the maximum per video; set video_length to use its first frames",
        )
    logger.info("Video length 0: using the %d frames of %s.", count, source_field)
    return dataclasses.replace(params, video_length=count, batch_size=min(params.batch_size, count))


def _fit_units(
    params: AnimateDiffParams, facts: HostFacts, source_count: int | None, automatic_length: bool
) -> AnimateDiffParams:
    """The video bounded by the shortest ControlNet batch unit (the ones fed by the source count it)."""
    counted = list(facts.unit_frames)
    if facts.source_frames_for is not None and source_count is not None:
        counted.append((facts.source_frames_for, source_count))
    if not counted:
        return params
    index, shortest = min(counted, key=lambda unit: unit[1])
    length = shortest if automatic_length else min(params.video_length, shortest)
    if length != params.video_length:
        logger.warning(
            "ControlNet unit %d has %d frames: the video is %s from %d to %d frames.",
            index,
            shortest,
            "set" if automatic_length else "shortened",
            params.video_length,
            length,
        )
    for unit, frames in counted:
        if frames > length:
            logger.info("ControlNet unit %d: using the first %d of its %d frames.", unit, length, frames)
    return dataclasses.replace(params, video_length=length, batch_size=min(params.batch_size, length))
