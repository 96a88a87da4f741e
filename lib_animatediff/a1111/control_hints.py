"""Per-window ControlNet hints: each UNet call sees only its own frames' hints, on the device.

sd-webui-controlnet (≥ 1.1.441) keeps the hints of an AnimateDiff batch unit as one tensor of
``k·N`` rows on the CPU (one row per frame; ``k`` = 2 when it doubles them for A1111's batched
cond/uncond) in ``latest_network.control_params[i].hint_cond`` (``hr_hint_cond`` for the hires
pass), and its UNet hook needs exactly one hint row per image of the call. Around each window
call :class:`ControlHints` puts the call's rows of every per-frame hint on the UNet's device and
the full CPU tensors back afterwards (also when the call raised); one-row hints (a single control
image for all frames) are left as they are. Per-frame IP-Adapter image embeddings (keyframe
"IP-Adapter prompt travel") and ControlLLLite condition images are sliced the same way, where
ControlNet keeps them. (The original re-sliced the IP-Adapter embedding from the first window's
slice, so later windows reused the first window's frames; here every window takes its own rows.)

Row mapping: a call holds ``G`` groups of the video's ``N`` frames, group-major, and picks batch
rows ``rows``; row ``r`` is frame ``r % N`` of group ``r // N`` and takes hint row
``((r // N) % k)·N + r % N``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from typing import Any

import torch

HINT_ATTRIBUTES = ("hint_cond", "hr_hint_cond")


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


Slot = tuple[torch.Tensor, Callable[[torch.Tensor], None], bool]  # tensor, put-back, move to device


def per_frame_tensors(param: Any) -> list[Slot]:
    """The tensors of one control param that may hold a row per frame, each with the function
    that puts a tensor in its place and whether ControlNet wants it on the UNet's device: the
    hints (moved), an IP-Adapter's image embedding and ControlLLLite's condition images (both
    stay where ControlNet keeps them)."""
    slots: list[Slot] = []
    for name in HINT_ATTRIBUTES:
        value = getattr(param, name, None)
        if isinstance(value, torch.Tensor) and value.ndim:
            slots.append((value, partial(setattr, param, name), True))
    model = getattr(param, "control_model", None)
    embed: Any = getattr(model, "image_emb", None)
    if isinstance(getattr(embed, "cond_emb", None), torch.Tensor) and hasattr(embed, "_replace"):

        def put_embedding(tensor: torch.Tensor, model: Any = model) -> None:
            model.image_emb = model.image_emb._replace(cond_emb=tensor)

        slots.append((embed.cond_emb, put_embedding, False))
    lllite_modules = getattr(model, "modules", None)
    if isinstance(lllite_modules, dict):
        for module in lllite_modules.values():
            image = getattr(module, "cond_image", None)
            if isinstance(image, torch.Tensor) and hasattr(module, "set_cond_image"):
                slots.append((image, module.set_cond_image, False))
    return slots


class ControlHints:
    """Slices the per-frame tensors of ControlNet's control params for one window call at a time."""

    def __init__(self, control_params: list[Any], num_frames: int) -> None:
        self.control_params = control_params
        self.num_frames = num_frames

    @classmethod
    def of(cls, p: Any, num_frames: int) -> ControlHints:
        """The hints of ``p``'s ControlNet units (nothing to do without ControlNet)."""
        return cls(controlnet_params(p), num_frames)

    @contextmanager
    def window(self, rows: torch.Tensor, device: torch.device) -> Iterator[None]:
        """Inside the block every per-frame tensor holds the rows of batch ``rows`` (hints on ``device``)."""
        slots = [slot for param in self.control_params for slot in per_frame_tensors(param)]
        replaced: list[tuple[torch.Tensor, Callable[[torch.Tensor], None]]] = []
        try:
            for full, put, to_device in slots:
                picked = hint_rows(rows.to(full.device), self.num_frames, full.shape[0])
                if picked is None:
                    continue
                replaced.append((full, put))
                window = full[picked]
                put(window.to(device) if to_device else window)
            yield
        finally:
            for full, put in reversed(replaced):
                put(full)
