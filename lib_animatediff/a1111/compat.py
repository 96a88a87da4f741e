"""What sd-webui-controlnet reads of an AnimateDiff generation through the original's
``scripts.animatediff_utils.get_animatediff_arg(p)``.

ControlNet checks ``.enable`` (its img2img-batch hijack then sets ``.is_i2i_batch``), reads
``video_length``, ``batch_size`` and ``closed_loop``, and for IP-Adapter keyframes copies
``prompt_scheduler``, sets its ``prompt_map`` to the key frames and calls
``multi_cond(per_frame_embeddings, closed)`` to travel between them as prompts travel.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from lib_animatediff import prompt_travel
from lib_animatediff.params import AnimateDiffParams


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
