"""Mirrors A1111 ``modules/sd_samplers_common.py``: the interrupt exception samplers raise."""

from __future__ import annotations


class InterruptedException(BaseException):
    """Raised by the CFG denoiser when the user presses Interrupt or Skip."""
