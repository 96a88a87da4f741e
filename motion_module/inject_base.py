"""Pieces shared by the ldm and diffusers injectors: checks that a motion module fits a UNet,
the frame count, the journal of reversible edits, and the cross-frame GroupNorm.

Every change an injector makes to a UNet goes through :class:`EditJournal` (the host-patch
:class:`~motion_module.journal.Journal` with module edits), which records how to undo it; undoing
replays those records newest first, so the module tree, parameters, buffers, hooks and ``forward``
attributes end up exactly as they were.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from motion_module.errors import MotionModuleError
from motion_module.journal import Journal
from motion_module.model import MotionModule

HostModule = Any
"""A module of the host's UNet (ldm ``UNetModel`` or diffusers ``UNet2DConditionModel``): read by
duck typing, since either library's blocks are reached through ``nn.Module.__getattr__``."""

FAMILY_NAMES = {"sd15": "SD1.5", "sdxl": "SDXL"}
DOWN_LAYERS_PER_LEVEL = 2
UP_LAYERS_PER_LEVEL = 3


def layer_channels(layer: Any) -> int:
    """The channel count a temporal layer works on."""
    return layer.temporal_transformer.norm.num_channels


def check_family(unet_family: str, mm: MotionModule) -> None:
    """Reject a motion module made for the other SD family than the UNet's."""
    if mm.family != unet_family:
        raise MotionModuleError(
            f"motion module {mm.variant!r} is made for {FAMILY_NAMES.get(mm.family, mm.family)} "
            f"and cannot run on this {FAMILY_NAMES[unet_family]} UNet"
        )


def check_layer(where: str, layer: nn.Module, unet_channels: int) -> None:
    """Reject a temporal layer whose width does not match the UNet activation at ``where``."""
    channels = layer_channels(layer)
    if channels != unet_channels:
        raise MotionModuleError(
            f"motion module layer for {where} has {channels} channels but the UNet has {unet_channels} there"
        )


def check_level_counts(mm: MotionModule, levels: int) -> None:
    """Reject a motion module whose number of levels or layers per level does not fit the UNet."""
    shape = ([len(block) for block in mm.down_layers], [len(block) for block in mm.up_layers])
    expected = ([DOWN_LAYERS_PER_LEVEL] * levels, [UP_LAYERS_PER_LEVEL] * levels)
    if shape != expected:
        raise MotionModuleError(
            f"motion module has {shape[0]} down and {shape[1]} up layers per level, "
            f"the UNet needs {expected[0]} and {expected[1]}"
        )


class FrameCount:
    """The number of frames ``F`` per group in the UNet batch ``(G*F, C, H, W)``."""

    def __init__(self, max_frames: int) -> None:
        self.max_frames = max_frames
        self.frames: int | None = None

    def set(self, frames: int) -> None:
        """Set ``F``; rejects anything but an integer in ``1..max_frames``."""
        if isinstance(frames, bool) or not hasattr(frames, "__index__") or operator.index(frames) < 1:
            raise MotionModuleError(f"frames must be a positive integer, got {frames!r}")
        frames = operator.index(frames)
        if frames > self.max_frames:
            raise MotionModuleError(
                f"frames={frames} is longer than the motion module's positional encoding "
                f"({self.max_frames} frames); use a context window of at most {self.max_frames}"
            )
        self.frames = frames

    def split(self, batch: int) -> tuple[int, int]:
        """``(G, F)`` for a UNet batch of ``batch`` images; raises if ``F`` is unset or does not divide it."""
        if self.frames is None:
            raise MotionModuleError("call set_frames(n) on the injection handle before running the UNet")
        if batch % self.frames:
            raise MotionModuleError(
                f"UNet batch of {batch} images is not a multiple of frames={self.frames} set with set_frames()"
            )
        return batch // self.frames, self.frames


def run_temporal(layer: nn.Module, frames: FrameCount, x: torch.Tensor) -> torch.Tensor:
    """Apply a temporal layer to a UNet activation ``(G*F, C, H, W)`` with ``F`` from ``frames``."""
    _, count = frames.split(x.shape[0])
    return layer(x, count)


class FramedTemporal(nn.Module):
    """A temporal layer callable as ``layer(x)``, for layer lists that pass nothing else."""

    def __init__(self, temporal: nn.Module, frames: FrameCount) -> None:
        super().__init__()
        self.temporal = temporal
        self._frames = frames

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return run_temporal(self.temporal, self._frames, x)


class EditJournal(Journal):
    """A :class:`~motion_module.journal.Journal` with the module edits the injectors make."""

    def insert(self, sequence: nn.Sequential, index: int, module: nn.Module) -> None:
        """Insert ``module`` into ``sequence`` before position ``index``."""
        before = list(sequence._modules.items())
        sequence.insert(index, module)

        def undo() -> None:
            sequence._modules.clear()
            sequence._modules.update(before)

        self.record(undo, f"{type(module).__name__} inserted into a {type(sequence).__name__}")

    def add_module(self, parent: nn.Module, name: str, module: nn.Module) -> None:
        """Register ``module`` as a new child ``name`` of ``parent``."""
        self.set_attr(parent, name, module)

    def forward_hook(self, module: nn.Module, hook: Callable) -> None:
        """Run ``hook(module, args, output)`` after ``module``; its return value replaces the output."""
        self.record(module.register_forward_hook(hook).remove, f"forward hook on a {type(module).__name__}")

    def wrap_forward(
        self, module: nn.Module, wrapper: Callable[[Callable, torch.Tensor], torch.Tensor]
    ) -> None:
        """Make ``module(x)`` call ``wrapper(previous_forward, x)``, on this instance only."""
        previous = module.__dict__.get("forward")

        def call_previous(x: torch.Tensor) -> torch.Tensor:
            return previous(x) if previous is not None else type(module).forward(module, x)

        self.set_attr(module, "forward", lambda x: wrapper(call_previous, x))


def make_cross_frame(journal: EditJournal, norm: nn.GroupNorm, frames: FrameCount) -> None:
    """Make ``norm`` normalise each group of ``F`` frames together, over ``(F, C/groups, H, W)``.

    This is how the v1 and HotShot-XL motion modules were trained (their UNet ran on 5-D video
    tensors). ``G`` comes from the batch size and ``F``, never from an assumed cond/uncond pair.
    """

    def cross_frame(previous: Callable, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4:
            return previous(x)
        groups, count = frames.split(x.shape[0])
        video = x.unflatten(0, (groups, count)).transpose(1, 2)
        return previous(video).transpose(1, 2).flatten(0, 1)

    journal.wrap_forward(norm, cross_frame)
