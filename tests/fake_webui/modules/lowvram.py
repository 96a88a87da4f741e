"""Mirrors A1111 ``modules/lowvram.py``: whether --lowvram/--medvram offloading is on for a model."""

from __future__ import annotations


def is_enabled(sd_model) -> bool:
    """A1111 sets ``sd_model.lowvram`` when it sets up offloading."""
    return bool(getattr(sd_model, "lowvram", False))
