"""Swap a motion module's training noise schedule into A1111's model for one sampling call.

A1111's samplers derive their sigmas from ``sd_model.alphas_cumprod`` (and reset it from
``alphas_cumprod_original`` before every batch). AnimateDiff was trained with its own betas, so
both are replaced through the run's journal while the motion module runs, and put back when it
is undone, also on errors.
"""

from __future__ import annotations

from typing import Any

import torch

from lib_animatediff import schedule
from motion_module.journal import Journal


def swap_training_schedule(journal: Journal, sd_model: Any, beta_schedule: schedule.BetaScheduleLike) -> None:
    """Until ``journal`` is undone, ``sd_model.alphas_cumprod(_original)`` follow ``beta_schedule``."""
    current = sd_model.alphas_cumprod
    swapped = schedule.training_alphas_cumprod(beta_schedule, dtype=torch.float32).to(
        device=current.device, dtype=current.dtype
    )
    journal.set_attr(sd_model, "alphas_cumprod", swapped)
    journal.set_attr(sd_model, "alphas_cumprod_original", swapped)
