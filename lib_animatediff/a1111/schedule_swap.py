"""Swap a motion module's training noise schedule into A1111's model for one sampling call.

A1111's samplers derive their sigmas from ``sd_model.alphas_cumprod`` (and reset it from
``alphas_cumprod_original`` before every batch). AnimateDiff was trained with its own betas, so
both are replaced while the motion module runs and put back afterwards, also on errors.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch

from lib_animatediff import schedule

_MISSING = object()


@contextmanager
def training_schedule(sd_model: Any, beta_schedule: Any) -> Iterator[None]:
    """Within the block ``sd_model.alphas_cumprod(_original)`` follow ``beta_schedule``."""
    current = sd_model.alphas_cumprod
    original = getattr(sd_model, "alphas_cumprod_original", _MISSING)
    swapped = schedule.training_alphas_cumprod(beta_schedule, dtype=torch.float32).to(
        device=current.device, dtype=current.dtype
    )
    try:
        sd_model.alphas_cumprod = swapped
        sd_model.alphas_cumprod_original = swapped
        yield
    finally:
        sd_model.alphas_cumprod = current
        if original is _MISSING:
            del sd_model.alphas_cumprod_original
        else:
            sd_model.alphas_cumprod_original = original
