"""What sd-webui-controlnet uses of an AnimateDiff generation by the original's module paths.

``scripts.animatediff_utils.get_animatediff_arg(p)``: ControlNet checks ``.enable`` (its
img2img-batch hijack then sets ``.is_i2i_batch``), reads ``video_length``, ``batch_size`` and
``closed_loop``, and for IP-Adapter keyframes copies ``prompt_scheduler``, sets its ``prompt_map``
to the key frames and calls ``multi_cond(per_frame_embeddings, closed)`` to travel between them as
prompts travel.

``scripts.animatediff_mm.MotionWrapper``: SparseCtrl's motion part, whose layers ControlNet calls
as ``layer(x)`` inside the UNet call of a context window; they take the frame count of the
injection that :func:`foreign_layers_follow` names for the sampling call in progress.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

import torch

from lib_animatediff import prompt_travel
from lib_animatediff.params import AnimateDiffParams
from motion_module import InjectionHandle, MotionModuleError, wrapper

_sampling_injection: ContextVar[InjectionHandle | None] = ContextVar("animatediff_injection", default=None)


@contextmanager
def foreign_layers_follow(handle: InjectionHandle) -> Iterator[None]:
    """While active, SparseCtrl layers called without a frame count take ``handle``'s."""
    token = _sampling_injection.set(handle)
    try:
        yield
    finally:
        _sampling_injection.reset(token)


def sampling_frames() -> int:
    """Frames per group of the window being sampled (the frame source of foreign layers)."""
    handle = _sampling_injection.get()
    if handle is None or handle.frames is None:
        raise MotionModuleError(
            "a temporal layer was called without a frame count outside an AnimateDiff generation"
        )
    return handle.frames


class MotionWrapper(wrapper.MotionWrapper):
    """The original's ``MotionWrapper`` for SparseCtrl: its layers follow the sampling call's frames."""

    def __init__(
        self, mm_name: str, mm_hash: str, mm_type: wrapper.MotionModuleType, operations: Any = None
    ) -> None:
        super().__init__(mm_name, mm_hash, mm_type, operations)
        self.bind_frame_source(sampling_frames)


@dataclass
class PromptScheduler:
    """The original's prompt scheduler as ControlNet uses it: ``prompt_map`` frame → prompt."""

    prompt_map: dict[int, str] = field(default_factory=dict)

    def multi_cond(self, cond: torch.Tensor, prompt_closed_loop: bool) -> torch.Tensor:
        """Rows of ``cond`` (one per frame) travelled between the ``prompt_map`` frames."""
        schedule = prompt_travel.PromptSchedule("", cond.shape[0], dict(self.prompt_map))
        return prompt_travel.interpolate(cond, schedule, closed=prompt_closed_loop)


@dataclass
class AnimateDiffArgs:
    """The fields of the original's ``AnimateDiffProcess`` that ControlNet reads or sets."""

    enable: bool
    video_length: int
    batch_size: int
    closed_loop: str
    prompt_scheduler: PromptScheduler
    is_i2i_batch: bool = False

    @classmethod
    def of(
        cls, params: AnimateDiffParams, travel: prompt_travel.PromptSchedule | None = None
    ) -> AnimateDiffArgs:
        keyframes = dict(travel.keyframes) if travel is not None else {}
        return cls(
            enable=params.enable,
            video_length=params.video_length,
            batch_size=params.batch_size,
            closed_loop=params.closed_loop,
            prompt_scheduler=PromptScheduler(keyframes),
        )


def get_animatediff_arg(p: Any) -> AnimateDiffArgs | None:
    """AnimateDiff's arguments of ``p`` as ControlNet expects them; None when AnimateDiff is off."""
    from lib_animatediff.a1111 import i2i_batch, script_flow

    run = script_flow.current_run(p)
    if run is not None:
        return AnimateDiffArgs.of(run.params, run.travel)
    params = i2i_batch.enabled_params(p)
    return AnimateDiffArgs.of(params) if params is not None else None
