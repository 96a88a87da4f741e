"""The noise schedule a motion module was trained with (the "grey output" fix, reference §2.8).

SD1.5 motion modules and HotShot-XL were trained with betas linear in β (0.00085 → 0.012), not SD's
scaled-linear schedule; AnimateDiff-SDXL with scaled-linear 0.00085 → 0.020. The host swaps the
returned ``alphas_cumprod`` in for the generation and restores its own afterwards.
"""

from __future__ import annotations

from typing import Protocol

import torch

KINDS = ("linear", "scaled_linear")


class BetaScheduleLike(Protocol):
    """Anything with the fields of ``motion_module.BetaSchedule``."""

    @property
    def kind(self) -> str: ...
    @property
    def beta_start(self) -> float: ...
    @property
    def beta_end(self) -> float: ...
    @property
    def num_steps(self) -> int: ...


def training_alphas_cumprod(
    beta_schedule: BetaScheduleLike, *, dtype: torch.dtype = torch.float64
) -> torch.Tensor:
    """``cumprod(1 − β)`` over ``num_steps`` training steps, computed throughout in ``dtype``.

    ``linear`` spaces β evenly; ``scaled_linear`` spaces √β evenly. With ``dtype=torch.float32`` the
    numbers equal the original extension's (and diffusers') float32 computation bit for bit.
    """
    kind, start, end, steps = (
        beta_schedule.kind,
        beta_schedule.beta_start,
        beta_schedule.beta_end,
        beta_schedule.num_steps,
    )
    if kind not in KINDS:
        raise ValueError(f"beta schedule kind={kind!r}: expected one of {', '.join(KINDS)}")
    if not 0 < start < end < 1 or steps < 2:
        raise ValueError(
            f"beta schedule {start}..{end} over {steps} steps: need 0 < start < end < 1, steps >= 2"
        )
    if kind == "linear":
        betas = torch.linspace(start, end, steps, dtype=dtype)
    else:
        betas = torch.linspace(start**0.5, end**0.5, steps, dtype=dtype) ** 2
    return torch.cumprod(1.0 - betas, dim=0)
