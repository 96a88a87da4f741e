"""Mirrors A1111 ``modules/devices.py``: the compute device and dtypes (CPU, float32 here)."""

from __future__ import annotations

import torch

cpu = torch.device("cpu")
device = cpu
dtype = torch.float32
dtype_unet = torch.float32
dtype_vae = torch.float32


def torch_gc() -> None:
    """A1111 empties the CUDA cache here; nothing to do on the CPU."""
