"""Inject a motion module into a UNet, and take it out again exactly.

``inject(unet, mm)`` accepts the ldm/sgm ``UNetModel`` that A1111 runs (positions: see
:mod:`motion_module.inject_ldm`) or a diffusers ``UNet2DConditionModel`` (see
:mod:`motion_module.inject_diffusers`). The UNet then expects batches of ``G*F`` images, ``G``
groups of ``F`` consecutive frames, with ``F`` set on the returned handle::

    with inject(unet, mm) as handle:
        handle.set_frames(16)
        eps = unet(x, t, context=c)   # x: (G*16, 4, h, w)

Leaving the ``with`` block (also by an exception) or calling ``restore()`` puts the UNet back as
it was. A UNet holds one motion module at a time, and a motion module is in one UNet at a time.
"""

from __future__ import annotations

import weakref
from types import ModuleType, TracebackType

from torch import nn

from motion_module import inject_diffusers, inject_ldm
from motion_module.errors import MotionModuleError
from motion_module.inject_base import EditJournal, FrameCount
from motion_module.model import MotionModule

_occupied: weakref.WeakSet[nn.Module] = weakref.WeakSet()


class InjectionHandle:
    """A motion module injected into a UNet: sets the frame count, restores the UNet."""

    def __init__(self, unet: nn.Module, mm: MotionModule, frames: FrameCount, journal: EditJournal) -> None:
        self._unet = unet
        self._mm = mm
        self._frames = frames
        self._journal = journal
        self._active = True

    @property
    def max_frames(self) -> int:
        """The longest window the motion module takes (its positional-encoding length)."""
        return self._frames.max_frames

    @property
    def frames(self) -> int | None:
        """Frames per group ``F`` set with :meth:`set_frames`, or ``None`` before that."""
        return self._frames.frames

    @property
    def active(self) -> bool:
        """Whether the motion module is still injected."""
        return self._active

    def set_frames(self, n: int) -> None:
        """Set the number of frames ``F`` per group in the UNet batch ``(G*F, C, H, W)``.

        Raises ``MotionModuleError`` for ``n`` outside ``1..max_frames`` or after :meth:`restore`.
        """
        if not self._active:
            raise MotionModuleError("set_frames() on a restored injection handle")
        self._frames.set(n)

    def restore(self) -> None:
        """Take the motion module out and undo every change; a second call does nothing."""
        self._journal.undo()
        if self._active:
            _occupied.discard(self._unet)
            _occupied.discard(self._mm)
            self._active = False

    def __enter__(self) -> InjectionHandle:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.restore()


def inject(unet: nn.Module, mm: MotionModule) -> InjectionHandle:
    """Inject motion module ``mm`` into ``unet`` and return the handle that restores it.

    Raises ``MotionModuleError``, with the UNet unchanged, for an unknown UNet type or layout, a
    motion module of the other SD family (SDXL vs SD1.5), layers that do not fit the UNet's
    channels, or a UNet / motion module that is already injected.
    """
    backend: ModuleType
    if inject_ldm.is_ldm_unet(unet):
        backend = inject_ldm
    elif inject_diffusers.is_diffusers_unet(unet):
        backend = inject_diffusers
    else:
        raise MotionModuleError(
            f"cannot inject into {type(unet).__name__}: expected an ldm/sgm UNetModel or a diffusers "
            "UNet2DConditionModel"
        )
    if unet in _occupied:
        raise MotionModuleError("this UNet already has a motion module injected; restore it first")
    if mm in _occupied:
        raise MotionModuleError(
            f"motion module {mm.variant!r} is already injected into a UNet; restore it first"
        )
    frames = FrameCount(mm.pe_length)
    journal = EditJournal()
    try:
        backend.inject_into(unet, mm, frames, journal)
    except BaseException:
        journal.undo()
        raise
    _occupied.add(unet)
    _occupied.add(mm)
    return InjectionHandle(unet, mm, frames, journal)
