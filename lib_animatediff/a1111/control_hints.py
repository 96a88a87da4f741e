"""Per-window ControlNet hints: each UNet call sees only its own frames' hints, on the device.

sd-webui-controlnet (≥ 1.1.441) keeps the hints of an AnimateDiff batch unit as one tensor of
``k·N`` rows on the CPU (one row per frame; ``k`` = 2 when it doubles them for A1111's batched
cond/uncond) in ``latest_network.control_params[i].hint_cond`` (``hr_hint_cond`` for the hires
pass), and its UNet hook needs exactly one hint row per image of the call. Around each window
call :class:`ControlHints` puts the call's rows of every per-frame hint on the UNet's device and
the full CPU tensors back afterwards (also when the call raised); one-row hints (a single control
image for all frames) are left as they are.

Row mapping: a call holds ``G`` groups of the video's ``N`` frames, group-major, and picks batch
rows ``rows``; row ``r`` is frame ``r % N`` of group ``r // N`` and takes hint row
``((r // N) % k)·N + r % N``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch

HINT_ATTRIBUTES = ("hint_cond", "hr_hint_cond")
logger = logging.getLogger(__name__)


def controlnet_params(p: Any) -> list[Any]:
    """The control params of sd-webui-controlnet's active UNet hook for ``p`` ([] without ControlNet)."""
    try:
        from scripts import external_code
    except ImportError:
        return []
    script = external_code.find_cn_script(getattr(p, "scripts", None))
    network = getattr(script, "latest_network", None) if script is not None else None
    return list(getattr(network, "control_params", None) or [])


def hint_rows(rows: torch.Tensor, num_frames: int, hint_length: int) -> torch.Tensor | None:
    """Rows of a ``hint_length``-row hint for batch ``rows`` of a call over ``num_frames``-frame
    groups; None when the hint is not per frame (one row, or not a multiple of the frame count)."""
    if hint_length <= 1 or hint_length % num_frames:
        return None
    copies = hint_length // num_frames
    return (rows // num_frames) % copies * num_frames + rows % num_frames


class ControlHints:
    """Slices the per-frame hints of ControlNet's control params for one window call at a time."""

    def __init__(self, control_params: list[Any], num_frames: int) -> None:
        self.control_params = control_params
        self.num_frames = num_frames

    @classmethod
    def of(cls, p: Any, num_frames: int) -> ControlHints:
        """The hints of ``p``'s ControlNet units (nothing to do without ControlNet)."""
        return cls(controlnet_params(p), num_frames)

    @contextmanager
    def window(self, rows: torch.Tensor, device: torch.device) -> Iterator[None]:
        """Inside the block every per-frame hint holds the rows of batch ``rows``, on ``device``."""
        replaced: list[tuple[Any, str, torch.Tensor]] = []
        try:
            for param in self.control_params:
                for name in HINT_ATTRIBUTES:
                    full = getattr(param, name, None)
                    if not isinstance(full, torch.Tensor) or not full.ndim:
                        continue
                    picked = hint_rows(rows.to(full.device), self.num_frames, full.shape[0])
                    if picked is None:
                        continue
                    replaced.append((param, name, full))
                    setattr(param, name, full[picked].to(device))
            yield
        finally:
            for param, name, full in reversed(replaced):
                setattr(param, name, full)
