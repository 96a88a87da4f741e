"""Mirrors the parts of sd-webui-controlnet that meet AnimateDiff at sampling time:

* ``scripts/controlnet.py`` ``Script.process`` → ``controlnet_hack``: enabled units' images become
  hints (one row for a single image; one row per file for an AnimateDiff batch unit, listed as
  ``scripts/animate_diff/batch.py`` does with ``mask:``/``keyframe:`` lines and batch modifiers;
  keyframe units get zero rows between the key frames), kept on the CPU and doubled when A1111
  batches cond and uncond; hires hints at the hires size; ``postprocess`` unhooks.
* ``scripts/hook.py`` ``ControlParams`` (``hint_cond`` setter resets ``used_hint_cond``) and
  ``UnetHook``, which replaces the ldm UNet's ``forward``. Its control is a fixed, per-image
  function of the hint (pooled to the latent size, projected to the latent channels, times the
  weight) added to the UNet output; like the real hook it needs one hint row per image of the
  call (or one row for all), and it records every call for the tests.
"""

from __future__ import annotations

import os
import re
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from modules import scripts, shared
from PIL import Image
from scripts.enums import ControlModelType

from scripts import external_code


def natural_key(name: str) -> list:
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


def listfiles(folder: str) -> list[str]:
    """A1111's ``shared.listfiles``: files of ``folder``, natural order, no hidden files."""
    names = sorted((name for name in os.listdir(folder) if not name.startswith(".")), key=natural_key)
    return [os.path.join(folder, name) for name in names if os.path.isfile(os.path.join(folder, name))]


def add_animate_diff_batch_input(p: Any, unit: Any) -> Any:
    """``scripts/animate_diff/batch.py``: the unit's files (after batch modifiers) as its images."""
    lines = unit.batch_images.split("\n")
    for line in lines[1:]:
        if line.startswith("mask:"):
            unit.batch_mask_dir = line[len("mask:") :].strip()
        elif line.startswith("keyframe:"):
            unit.batch_keyframe_idx = [int(i) for i in line[len("keyframe:") :].split(",")]
    files = listfiles(lines[0])
    for modifier in getattr(unit, "batch_modifiers", []):
        files = modifier(files, p)
    unit.batch_image_files = files
    unit.image = [{"image": path, "mask": None} for path in files]
    return unit


def image_tensor(image: Any, height: int, width: int) -> torch.Tensor:
    """One control image (path, array or ``{"image": ...}``) as a ``(1, 3, H, W)`` tensor in [0, 1]."""
    if isinstance(image, dict):
        image = image["image"]
    picture = Image.open(image) if isinstance(image, str) else Image.fromarray(np.asarray(image))
    picture = picture.convert("RGB").resize((width, height))
    return torch.from_numpy(np.asarray(picture, dtype=np.float32) / 255.0).permute(2, 0, 1)[None]


class ControlParams:
    def __init__(self, hint_cond, hr_hint_cond, weight, control_model_type=ControlModelType.ControlNet):
        self._hint_cond = hint_cond
        self.hr_hint_cond = hr_hint_cond
        self.weight = weight
        self.control_model_type = control_model_type
        self.used_hint_cond = None

    @property
    def hint_cond(self):
        return self._hint_cond

    @hint_cond.setter
    def hint_cond(self, new_hint_cond):
        self._hint_cond = new_hint_cond
        self.used_hint_cond = None


def control_of(hint: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """The fake ControlNet's effect: per image, the hint pooled to the latent, mixed to its channels."""
    pooled = F.adaptive_avg_pool2d(hint.to(like), like.shape[-2:])
    mix = torch.linspace(-1.0, 1.0, like.shape[1] * pooled.shape[1]).to(like).view(like.shape[1], -1, 1, 1)
    return F.conv2d(pooled, mix)


class UnetHook:
    def __init__(self, control_params: list[ControlParams]) -> None:
        self.control_params = control_params
        self.calls: list[dict] = []  # per UNet call: rows, and per param the hint used (rows, device)
        self.unet = None

    def hook(self, unet: torch.nn.Module) -> None:
        outer = self
        self.unet = unet
        original = unet.forward

        def forward(x, timesteps=None, context=None, **kwargs):
            out = original(x, timesteps=timesteps, context=context, **kwargs)
            used = []
            for param in outer.control_params:
                hint = param.hint_cond
                hr = param.hr_hint_cond
                if isinstance(hr, torch.Tensor) and hr.shape[-1] == x.shape[-1] * 8:
                    hint = hr
                if hint.shape[0] not in (1, x.shape[0]):
                    raise RuntimeError(
                        f"ControlNet hint has {hint.shape[0]} rows for a batch of {x.shape[0]}"
                    )
                used.append(hint.detach().clone())
                out = out + param.weight * control_of(hint, out)
            outer.calls.append({"rows": x.shape[0], "hints": used})
            return out

        unet.forward = forward

    def restore(self) -> None:
        if self.unet is not None:
            del self.unet.forward
            self.unet = None


class Script(scripts.Script):
    def __init__(self) -> None:
        self.latest_network: UnetHook | None = None
        self.hooks: list[UnetHook] = []

    def title(self):
        return "ControlNet"

    def show(self, is_img2img):
        return scripts.AlwaysVisible

    def unit_hint(self, p: Any, unit: Any, height: int, width: int) -> torch.Tensor:
        if unit.is_animate_diff_batch:
            unit = add_animate_diff_batch_input(p, unit)
        images = unit.image if isinstance(unit.image, list) else [unit.image]
        hint = torch.cat([image_tensor(image, height, width) for image in images])
        keyframes = unit.batch_keyframe_idx
        if unit.is_animate_diff_batch and keyframes is not None:
            full = torch.zeros((p.batch_size, *hint.shape[1:]))
            full[keyframes] = hint[: len(keyframes)]
            hint = full
        if unit.is_animate_diff_batch and shared.opts.batch_cond_uncond:
            hint = torch.cat([hint, hint])
        return hint.cpu()

    @staticmethod
    def hires_size(p: Any) -> tuple[int, int]:
        """``Script.get_target_dimensions``: the hires pass's (height, width) (``hr_scale`` only)."""
        return int(p.height * p.hr_scale), int(p.width * p.hr_scale)

    def process(self, p, *args, **kwargs):
        units = [unit for unit in external_code.get_all_units_in_processing(p) if unit.enabled]
        if not units:
            return
        hires = getattr(p, "enable_hr", False)
        params = []
        for unit in units:
            hint = self.unit_hint(p, unit, p.height, p.width)
            hr_hint = self.unit_hint(p, unit, *self.hires_size(p)) if hires else None
            params.append(ControlParams(hint, hr_hint, unit.weight))
        self.latest_network = UnetHook(params)
        self.latest_network.hook(p.sd_model.model.diffusion_model)
        self.hooks.append(self.latest_network)

    def postprocess(self, p, processed, *args):
        if self.latest_network is not None:
            self.latest_network.restore()
            self.latest_network = None
