"""Mirrors A1111 ``modules/prompt_parser.py``: ``DictWithShape``, the type of SDXL conditionings."""

from __future__ import annotations

import torch


class DictWithShape(dict):
    """SDXL's conditioning: a dict of tensors whose ``shape`` is its ``crossattn`` entry's (A1111's
    CFG denoiser compares ``cond.shape[1]`` with ``uncond.shape[1]``)."""

    @property
    def shape(self) -> torch.Size:
        return self["crossattn"].shape
