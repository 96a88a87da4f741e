"""Mirrors A1111 ``modules/sd_samplers.py``: ``create_sampler`` (only "Euler" here)."""

from __future__ import annotations

from .sd_samplers_kdiffusion import KDiffusionSampler

SAMPLERS = {"Euler": "sample_euler"}


def create_sampler(name: str, model):
    return KDiffusionSampler(SAMPLERS[name], model)
