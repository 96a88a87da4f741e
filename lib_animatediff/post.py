"""The post-processing chain both hosts run on a video's decoded frames: closed-loop ``A`` ping-pong
(as the original), frame interpolation, then the writers.

The A1111 glue (:mod:`lib_animatediff.a1111.outputs`) and the runner (:mod:`lib_animatediff.runner.generate`)
both call :func:`finish` and :func:`write`, and both name the interpolation that will really run with
:func:`interpolation_that_runs` before the infotext is written.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from lib_animatediff import output
from lib_animatediff.frame_ops import apply_closed_loop
from lib_animatediff.interpolate import find_film_model, interpolate
from lib_animatediff.options import INTERP_BACKENDS
from lib_animatediff.output import Frame, FrameInput
from lib_animatediff.params import AnimateDiffParams

FilmDirs = Iterable[str | os.PathLike[str]]


def interpolation_that_runs(params: AnimateDiffParams, film_dirs: FilmDirs) -> AnimateDiffParams:
    """``params`` with ``interp`` naming the method that will run: FILM without its model file in
    ``film_dirs`` becomes ``Optical flow`` (what :func:`lib_animatediff.interpolate.interpolate` falls
    back to), so the infotext tells what was done."""
    if params.interp != "FILM" or find_film_model(film_dirs) is not None:
        return params
    return dataclasses.replace(params, interp="Optical flow")


def finish(
    frames: Sequence[Frame] | Iterator[Frame],
    count: int,
    params: AnimateDiffParams,
    *,
    film_dirs: FilmDirs = (),
) -> tuple[Sequence[Frame] | Iterator[Frame], int]:
    """The frames to write and how many there are: ``frames`` (``count`` of them) ping-ponged for
    closed loop ``A`` and interpolated. Without either, ``frames`` pass through untouched (an
    iterator stays an iterator, so decoded frames can stream into the writers)."""
    order = apply_closed_loop(
        range(count), params.closed_loop, video_length=params.video_length, batch_size=params.batch_size
    )
    if params.interp == "Off" and order == list(range(count)):
        return frames, count
    clip = list(frames)
    video = [clip[index] for index in order]
    if params.interp != "Off":
        video = interpolate(video, params.interp_x, INTERP_BACKENDS[params.interp], film_dirs=film_dirs)
    return video, len(video)


def write(
    frames: Sequence[FrameInput] | Iterator[FrameInput],
    stem: str | os.PathLike[str],
    formats: Sequence[str],
    params: AnimateDiffParams,
    *,
    infotext: str,
    options: output.OutputOptions | None = None,
) -> list[Path]:
    """Write the finished frames in ``formats`` next to ``stem`` with the video's FPS and loop count."""
    return output.save(
        frames,
        stem,
        formats,
        fps=params.fps,
        loop_number=params.loop_number,
        infotext=infotext,
        options=options,
    )
