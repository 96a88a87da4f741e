"""The diffusers schedulers the runner offers, configured with a motion module's training betas.

AnimateDiff SD1.5 modules were trained with linear betas 0.00085 -> 0.012 and the SDXL beta with
scaled-linear 0.00085 -> 0.020 (``MotionModule.beta_schedule``); sampling with SD's own
scaled-linear schedule gives grey, washed-out videos, so every scheduler here takes the module's.
"""

from __future__ import annotations

from typing import Any

import torch
from diffusers import (
    DDIMScheduler,
    DPMSolverMultistepScheduler,
    EulerAncestralDiscreteScheduler,
    EulerDiscreteScheduler,
    LCMScheduler,
)
from diffusers.schedulers.scheduling_utils import SchedulerMixin

from lib_animatediff.runner.errors import InputError
from lib_animatediff.schedule import BetaScheduleLike, training_alphas_cumprod
from motion_module.variants import LINEAR_BETAS

SAMPLERS: dict[str, tuple[type[SchedulerMixin], dict[str, Any]]] = {
    "Euler": (EulerDiscreteScheduler, {"timestep_spacing": "trailing"}),
    "Euler a": (EulerAncestralDiscreteScheduler, {"timestep_spacing": "trailing"}),
    "DDIM": (
        DDIMScheduler,
        {"timestep_spacing": "trailing", "clip_sample": False, "set_alpha_to_one": False},
    ),
    "DPM++ 2M": (
        DPMSolverMultistepScheduler,
        {"algorithm_type": "dpmsolver++", "solver_order": 2, "use_karras_sigmas": True},
    ),
    "LCM": (LCMScheduler, {"clip_sample": False, "set_alpha_to_one": False}),
}


def make_scheduler(sampler: str, beta_schedule: BetaScheduleLike = LINEAR_BETAS) -> SchedulerMixin:
    """A fresh scheduler ``sampler`` (one of :data:`SAMPLERS`) over ``beta_schedule``'s training betas."""
    if sampler not in SAMPLERS:
        raise InputError(f"sampler={sampler!r}: expected one of {', '.join(SAMPLERS)}")
    alphas_cumprod = training_alphas_cumprod(beta_schedule)
    betas = 1 - alphas_cumprod / torch.cat([alphas_cumprod.new_ones(1), alphas_cumprod[:-1]])
    cls, options = SAMPLERS[sampler]
    return cls(
        num_train_timesteps=beta_schedule.num_steps,
        trained_betas=betas.tolist(),
        steps_offset=1,
        **options,
    )


def scheduler_for_motion_module(sampler: str, mm: Any) -> SchedulerMixin:
    """:func:`make_scheduler` with the motion module's training schedule (``mm.beta_schedule``)."""
    return make_scheduler(sampler, mm.beta_schedule)
