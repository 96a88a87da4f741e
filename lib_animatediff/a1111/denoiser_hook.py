"""Run A1111's UNet calls through context windows of frames, with the motion module in the UNet.

A1111's CFG denoiser calls ``sd_model.apply_model(x, t, cond)`` with cond and uncond rows in one
batch (Batch cond/uncond on), in separate calls (off), or with the uncond rows left out (NGMS,
skip-early-CFG). Whatever the layout, each call holds ``G`` whole groups of the video's ``N``
frames, group-major. :class:`FrameWindowHook` replaces ``apply_model`` on the model instance
through the run's journal (:meth:`FrameWindowHook.install`) until that is undone; per context window it calls the real ``apply_model`` on that window's rows of every
group (the motion module sees ``G`` clips of ``F`` frames) and fuses the windows with
:class:`lib_animatediff.windows.WindowPlan`; ControlNet's per-frame hints follow each window
(:mod:`lib_animatediff.a1111.control_hints`). It checks A1111's Interrupt/Skip before each window, stops on NaN/Inf in a
window's output (:func:`lib_animatediff.windows.check_finite`) and moves the progress bar across windows. The ``on_cfg_denoiser`` callback tells it the denoiser step (which
rotates the windows) and swaps in the per-frame prompt-travel conditioning.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext
from typing import Any

import torch

from lib_animatediff.a1111.control_hints import ControlHints
from lib_animatediff.windows import WindowPlan, check_finite
from motion_module.journal import Journal


class FrameWindowHook:
    """Windowed ``apply_model`` for one sampling call, put in with :meth:`install`."""

    def __init__(
        self,
        sd_model: Any,
        handle: Any,
        plan: WindowPlan,
        num_frames: int,
        *,
        state: Any,
        interrupted: type[BaseException],
        travel_cond: Callable[[Any], Any] | None = None,
        control_hints: ControlHints | None = None,
    ) -> None:
        self.sd_model = sd_model
        self.handle = handle
        self.plan = plan
        self.num_frames = num_frames
        self.state = state
        self.interrupted = interrupted
        self.travel_cond = travel_cond
        self.control_hints = control_hints
        self.step = 0
        self.cond_rows: int | None = None
        self._original: Callable[..., torch.Tensor] = sd_model.apply_model

    def install(self, journal: Journal) -> FrameWindowHook:
        """Route ``sd_model.apply_model`` through the windows until ``journal`` is undone."""
        journal.set_attr(self.sd_model, "apply_model", self._apply_model)
        return self

    def on_cfg_denoiser(self, cfg_params: Any) -> None:
        """Record the denoiser step and the cond row count; put in the per-frame travelled cond."""
        self.step = cfg_params.denoiser.step
        cond = cfg_params.text_cond
        self.cond_rows = (cond["crossattn"] if isinstance(cond, dict) else cond).shape[0]
        if self.travel_cond is not None and self.cond_rows == self.num_frames:
            cfg_params.text_cond = self.travel_cond(cond)

    def frame_windows(self) -> list[list[int]]:
        """The windows of this step."""
        return self.plan.windows(self.step, self.num_frames)

    def _apply_model(
        self, x: torch.Tensor, t: torch.Tensor, cond: Any, *args: Any, **kwargs: Any
    ) -> torch.Tensor:
        total = x.shape[0]
        if self.cond_rows not in (None, self.num_frames):
            raise RuntimeError(
                f"AnimateDiff: {self.cond_rows} conditionings for {self.num_frames} frames; AND in the "
                "prompt (several conditionings per frame) cannot be used with AnimateDiff"
            )
        if total % self.num_frames:
            raise RuntimeError(
                f"AnimateDiff: the UNet got a batch of {total} images, not whole videos of {self.num_frames} "
                "frames (is another extension changing the batch size?)"
            )
        frame_windows = self.frame_windows()
        calls = self.plan.call_count(frame_windows)
        progress_base = self.state.sampling_step
        done = 0

        def denoise(rows: torch.Tensor, frames: int) -> torch.Tensor:
            nonlocal done
            if self.state.interrupted or self.state.skipped:
                raise self.interrupted
            self.state.sampling_step = max(self.state.sampling_step, progress_base + done / calls)
            done += 1
            self.handle.set_frames(frames)
            rows = rows.to(x.device)
            picked = [take_rows(value, rows, total) for value in (t, cond, *args)]
            options = {key: take_rows(value, rows, total) for key, value in kwargs.items()}
            hints = self.control_hints.window(rows, x.device) if self.control_hints else nullcontext()
            with hints:
                prediction = self._original(x[rows], *picked, **options)
            return check_finite(prediction, step=self.step, rows=rows, num_frames=self.num_frames)

        return self.plan.denoise(
            denoise,
            frame_windows,
            num_frames=self.num_frames,
            num_groups=total // self.num_frames,
            sigma=self.sigma_of(t),
        )

    def sigma_of(self, t: torch.Tensor) -> float:
        """The k-diffusion sigma of the call's first timestep (the ``gauss`` fuse widens with it)."""
        alphas = self.sd_model.alphas_cumprod
        alpha = alphas[int(t.reshape(-1)[0].round().clamp(0, len(alphas) - 1))].double()
        return float(((1 - alpha) / alpha).sqrt())


def take_rows(value: Any, picked: torch.Tensor, rows: int) -> Any:
    """``value`` restricted to the ``picked`` batch rows: tensors with one row per image, recursively
    through the lists and dicts A1111 packs conditionings in; everything else unchanged."""
    if isinstance(value, torch.Tensor):
        return value[picked] if value.ndim and value.shape[0] == rows else value
    if isinstance(value, dict):
        return {k: take_rows(v, picked, rows) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(take_rows(v, picked, rows) for v in value)
    return value
