"""Injection into a diffusers ``UNet2DConditionModel``, at the places diffusers' ``UNetMotionModel``
runs its motion modules:

* each down block, after each of its two resnet (+ attention, if the block has attentions) pairs:
  ``down[level][i]``, before the downsampler;
* the mid block (motion modules with a mid block: v2, AnimateLCM), after the attention and before
  the second resnet;
* each up block, after each of its three resnet (+ attention) pairs: ``up[level][i]``, before the
  upsampler.

These are the same places as the ldm positions of :mod:`motion_module.inject_ldm`. The temporal
layers run as forward hooks on the resnet or attention they follow, and are registered as
``motion_modules`` children of their block, so that moving or casting the UNet carries them.

For motion modules trained with cross-frame GroupNorm (v1, HotShot-XL) the resnets' ``norm1`` and
``norm2`` and the final ``conv_norm_out`` are made cross-frame.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from motion_module.errors import MotionModuleError
from motion_module.inject_base import (
    EditJournal,
    FrameCount,
    HostModule,
    check_family,
    check_layer,
    check_level_counts,
    make_cross_frame,
    run_temporal,
)
from motion_module.model import MotionModule

LEVELS_PER_FAMILY = {4: "sd15", 3: "sdxl"}
CONTAINER_NAME = "motion_modules"


def is_diffusers_unet(unet: HostModule) -> bool:
    """Whether ``unet`` has the diffusers ``UNet2DConditionModel`` block structure."""
    return all(hasattr(unet, name) for name in ("down_blocks", "mid_block", "up_blocks", "conv_in"))


def unet_family(unet: HostModule) -> str:
    """``"sd15"`` (4 levels) or ``"sdxl"`` (3 levels)."""
    family = LEVELS_PER_FAMILY.get(len(unet.down_blocks))
    if family is None or len(unet.up_blocks) != len(unet.down_blocks):
        raise MotionModuleError(
            f"unsupported UNet layout: {len(unet.down_blocks)} down and {len(unet.up_blocks)} up blocks"
        )
    return family


def _hosts(block: HostModule) -> list[nn.Module]:
    """The modules after which a block's temporal layers run: its attentions, else its resnets."""
    attentions = getattr(block, "attentions", None)
    return list(attentions) if attentions else list(block.resnets)


def _output_with(output: Any, change: Callable[[torch.Tensor], torch.Tensor]) -> Any:
    """``output`` (a tensor, a tuple led by one, or a ``BaseOutput``) with its sample changed."""
    if isinstance(output, torch.Tensor):
        return change(output)
    if isinstance(output, tuple):
        return (change(output[0]), *output[1:])
    output.sample = change(output.sample)
    return output


def _placements(unet: HostModule, mm: MotionModule) -> list[tuple[HostModule, list[nn.Module], list]]:
    """``(block, hosts, layers)`` per block, checked against the UNet's channels and layer counts."""
    placements = []
    for kind, blocks, per_level in (
        ("down", unet.down_blocks, mm.down_layers),
        ("up", unet.up_blocks, mm.up_layers),
    ):
        for level, (block, level_layers) in enumerate(zip(blocks, per_level, strict=True)):
            hosts = _hosts(block)
            if len(hosts) != len(level_layers):
                raise MotionModuleError(
                    f"{kind}_blocks[{level}] has {len(hosts)} layers, the motion module {len(level_layers)}"
                )
            for i, layer in enumerate(level_layers):
                check_layer(f"{kind}_blocks[{level}] layer {i}", layer, block.resnets[i].out_channels)
            placements.append((block, hosts, list(level_layers)))
    if mm.mid_layer is not None:
        mid = unet.mid_block
        if not getattr(mid, "attentions", None):
            raise MotionModuleError(
                f"motion module {mm.variant!r} has a mid-block layer, the UNet no mid attention"
            )
        check_layer("mid_block", mm.mid_layer, mid.resnets[0].out_channels)
        placements.append((mid, [mid.attentions[0]], [mm.mid_layer]))
    for block, _, _ in placements:
        if hasattr(block, CONTAINER_NAME):
            raise MotionModuleError(f"{type(block).__name__} already has a {CONTAINER_NAME!r} attribute")
    return placements


def _resnet_norms(unet: HostModule) -> list[nn.GroupNorm]:
    """``norm1``/``norm2`` of every resnet, and ``conv_norm_out``."""
    norms = [
        norm
        for module in unet.modules()
        if type(module).__name__ == "ResnetBlock2D"
        for norm in (module.norm1, module.norm2)
    ]
    return norms + ([unet.conv_norm_out] if unet.conv_norm_out is not None else [])


def inject_into(unet: HostModule, mm: MotionModule, frames: FrameCount, journal: EditJournal) -> None:
    """Hook ``mm``'s temporal layers into ``unet``; everything is checked before the first edit."""
    family = unet_family(unet)
    check_family(family, mm)
    check_level_counts(mm, len(unet.down_blocks))
    placements = _placements(unet, mm)
    norms = _resnet_norms(unet) if mm.cross_frame_groupnorm else []
    for block, hosts, block_layers in placements:
        journal.add_module(block, CONTAINER_NAME, nn.ModuleList(block_layers))
        for host, layer in zip(hosts, block_layers, strict=True):
            journal.forward_hook(host, _after(layer, frames))
    for norm in norms:
        make_cross_frame(journal, norm, frames)


def _after(layer: nn.Module, frames: FrameCount) -> Callable:
    """A forward hook that runs ``layer`` on its host's output."""

    def hook(module: nn.Module, args: tuple, output: object) -> object:
        return _output_with(output, lambda x: run_temporal(layer, frames, x))

    return hook
