"""Training noise schedules against diffusers' schedulers and a float64 computation."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import torch
from diffusers import DDIMScheduler

from lib_animatediff.schedule import training_alphas_cumprod


@dataclass(frozen=True)
class Schedule:
    kind: str
    beta_start: float
    beta_end: float
    num_steps: int = 1000


@pytest.mark.parametrize(
    ("kind", "end"), [("linear", 0.012), ("scaled_linear", 0.020), ("scaled_linear", 0.012)]
)
def test_float32_equals_diffusers_and_float64_is_exact(kind, end):
    schedule = Schedule(kind, 0.00085, end)
    reference = DDIMScheduler(beta_start=0.00085, beta_end=end, beta_schedule=kind).alphas_cumprod
    assert torch.equal(training_alphas_cumprod(schedule, dtype=torch.float32), reference)
    exact = training_alphas_cumprod(schedule)
    assert exact.dtype == torch.float64
    betas = (
        np.linspace(0.00085, end, 1000)
        if kind == "linear"
        else np.linspace(0.00085**0.5, end**0.5, 1000) ** 2
    )
    np.testing.assert_allclose(exact.numpy(), np.cumprod(1 - betas), rtol=1e-12)


def test_linear_differs_from_sd_scaled_linear_at_the_end():
    linear = training_alphas_cumprod(Schedule("linear", 0.00085, 0.012))
    scaled = training_alphas_cumprod(Schedule("scaled_linear", 0.00085, 0.012))
    assert linear[-1] < scaled[-1]  # linear-in-beta ends noisier: the "grey output" fix


@pytest.mark.parametrize(
    "schedule",
    [
        Schedule("cosine", 0.00085, 0.012),
        Schedule("linear", 0.02, 0.01),
        Schedule("linear", 0.00085, 0.012, 1),
    ],
)
def test_bad_schedules(schedule):
    with pytest.raises(ValueError, match="beta schedule"):
        training_alphas_cumprod(schedule)
