"""Windowed denoising: run a denoiser over context windows of frames and fuse the overlaps.

Host-agnostic: the host supplies ``denoise(rows, frames) -> Tensor``. The full batch it indexes is
laid out as ``G`` groups (cond / uncond / further conds or clips) of ``N`` frames, so frame ``f`` of
group ``g`` is row ``g*N + f``. For each call ``rows`` lists, window after window and group after
group, the rows of the windows in that call; ``frames`` is the window length ``F`` (the host sets it
on the motion-module handle, whose temporal layers fold the call's batch into ``(rows/F, F)``).
The callable returns one output row per requested row.

Fusion per frame (every group alike), over the windows covering it:

* ``overwrite`` — the original: windows are applied in order and the last one wins;
* ``flat`` / ``pyramid`` / ``gauss`` — the weighted mean ``Σ w_i·ε_i / Σ w_i`` with the window's
  position weights ``w`` (reference §2.4: flat ones; pyramid ``min(i+1, L-i)``; gauss a Gaussian centred
  on the window with std ``1 + 8·min(4, σ)/4`` window positions, floored at 1e-3, as ADE's gauss-sigma).
  The mean is kept as a running update ``v += (ε - v)·w/W`` so a denoiser that returns the same value
  for a frame in every window gives back exactly that value.

Exact duplicate windows (``N`` mode makes them) never cost a second model call: weighted fuses count
each distinct window once; ``overwrite`` re-applies the stored result where the original re-ran it,
which gives the original's numbers. ``max_frames_per_call`` packs consecutive windows of equal length
into one call while ``windows × L`` stays within the budget; the fused result is bit-identical to one
window per call whenever the denoiser's output rows do not depend on the batch around them.

``check_finite`` is the hosts' NaN/Inf guard on each call's output (one ``isfinite().all()``).
``freenoise`` reschedules initial noise as FreeNoise does (reference §2.6).

:class:`WindowPlan` is the one declaration of the context options (size, stride, overlap with the
original's ``-1`` resolved, closed loop, schedule, fuse method, call packing) that the A1111 denoiser
hook and the runner's sampler both denoise with.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from lib_animatediff import context
from lib_animatediff.options import FUSE_METHODS, ClosedLoop, ContextSchedule, FuseMethod

if TYPE_CHECKING:
    from lib_animatediff.params import AnimateDiffParams

GAUSS_WEIGHT_FLOOR = 1e-3

Window = tuple[int, ...]
DenoiseFn = Callable[[torch.Tensor, int], torch.Tensor]


def fuse_weights(method: str, length: int, *, sigma: float | None = None) -> list[float]:
    """Position weights of a window of ``length`` frames (``overwrite`` has none: all ones)."""
    if method not in FUSE_METHODS:
        raise ValueError(f"fuse_method={method!r}: expected one of {', '.join(FUSE_METHODS)}")
    if method == "pyramid":
        return [float(min(i + 1, length - i)) for i in range(length)]
    if method == "gauss":
        spread = 1 + 8 * min(4.0, 4.0 if sigma is None else float(sigma)) / 4
        centre = (length - 1) / 2
        return [max(GAUSS_WEIGHT_FLOOR, math.exp(-0.5 * ((i - centre) / spread) ** 2)) for i in range(length)]
    return [1.0] * length


def plan_calls(
    windows: Sequence[Sequence[int]], *, max_frames_per_call: int | None = None
) -> list[list[Window]]:
    """Distinct windows in order of first appearance, packed into model calls.

    A call holds consecutive windows of equal length while their total frames stay within
    ``max_frames_per_call`` (always at least one window).
    """
    if max_frames_per_call is not None and max_frames_per_call < 1:
        raise ValueError(f"max_frames_per_call={max_frames_per_call!r}: expected >= 1 or None")
    distinct = list(dict.fromkeys(tuple(window) for window in windows))
    calls: list[list[Window]] = []
    for window in distinct:
        last = calls[-1] if calls else None
        fits = (
            last is not None
            and max_frames_per_call is not None
            and len(last[0]) == len(window)
            and (len(last) + 1) * len(window) <= max_frames_per_call
        )
        if fits and last is not None:
            last.append(window)
        else:
            calls.append([window])
    return calls


def window_rows(windows: Sequence[Sequence[int]], num_frames: int, num_groups: int) -> torch.Tensor:
    """Batch rows of the windows, window-major then group-major: ``g*N + f``."""
    rows = [g * num_frames + f for window in windows for g in range(num_groups) for f in window]
    return torch.tensor(rows, dtype=torch.long)


def denoise_windows(
    denoise: DenoiseFn,
    windows: Sequence[Sequence[int]],
    *,
    num_frames: int,
    num_groups: int = 1,
    fuse_method: str = "pyramid",
    max_frames_per_call: int | None = None,
    sigma: float | None = None,
) -> torch.Tensor:
    """Denoise every window and fuse; returns ``(G*N, ...)`` in the denoiser's dtype.

    ``rows`` reach ``denoise`` as a CPU ``LongTensor``. Frames no window covers stay zero (as in
    the original). ``sigma`` (the current noise level) only matters for ``gauss``.
    """
    if fuse_method not in FUSE_METHODS:
        raise ValueError(f"fuse_method={fuse_method!r}: expected one of {', '.join(FUSE_METHODS)}")
    if num_frames < 1 or num_groups < 1:
        raise ValueError(f"num_frames={num_frames}, num_groups={num_groups}: both must be >= 1")
    if not windows:
        raise ValueError("no windows to denoise")
    for window in windows:
        if not window or min(window) < 0 or max(window) >= num_frames:
            raise ValueError(f"window {list(window)} is empty or outside frames 0..{num_frames - 1}")
    sequence = [tuple(w) for w in windows]
    if fuse_method != "overwrite":
        sequence = list(dict.fromkeys(sequence))
    calls = plan_calls(sequence, max_frames_per_call=max_frames_per_call)
    last_use = {window: index for index, window in enumerate(sequence)}
    factors = _running_factors(sequence, num_frames, fuse_method, sigma)
    results: dict[Window, torch.Tensor] = {}
    pending = iter(calls)
    out: torch.Tensor | None = None
    for index, window in enumerate(sequence):
        while window not in results:
            call = next(pending)
            outputs = denoise(window_rows(call, num_frames, num_groups), len(call[0]))
            _check_output(outputs, len(call) * len(call[0]) * num_groups)
            results.update(zip(call, outputs.split(len(call[0]) * num_groups), strict=True))
        eps = results[window] if last_use[window] > index else results.pop(window)
        if out is None:
            accumulate = torch.promote_types(eps.dtype, torch.float32)
            out = eps.new_zeros((num_groups * num_frames, *eps.shape[1:]), dtype=accumulate)
            result_dtype = eps.dtype
        _fuse_into(out, eps, window, factors[index], num_frames, num_groups)
    assert out is not None  # there is at least one window
    return out.to(result_dtype)


class NonFiniteError(RuntimeError):
    """The UNet returned NaN or Inf for a window: sampling stops rather than writing black frames."""


def check_finite(prediction: torch.Tensor, *, step: int, rows: torch.Tensor, num_frames: int) -> torch.Tensor:
    """``prediction`` (the output for batch ``rows``) if every value is finite, else
    :class:`NonFiniteError` naming the sampling step and the window's frames."""
    if bool(torch.isfinite(prediction).all()):
        return prediction
    frames = sorted(set((rows.cpu() % num_frames).tolist()))
    raise NonFiniteError(
        f"AnimateDiff: the UNet returned NaN/Inf at sampling step {step} in the window of frames "
        f"{frames[0]}-{frames[-1]} ({len(frames)} frames); nothing is written. In half precision try "
        "--no-half or bf16, or a lower CFG scale"
    )


def _check_output(outputs: torch.Tensor, expected_rows: int) -> None:
    if outputs.shape[0] != expected_rows:
        raise ValueError(f"denoiser returned {outputs.shape[0]} rows for {expected_rows} requested")


def _running_factors(
    sequence: Sequence[Window], num_frames: int, fuse_method: str, sigma: float | None
) -> list[list[float] | None]:
    """Per window position, ``w / (weight so far + w)`` of the running mean (``None``: overwrite)."""
    if fuse_method == "overwrite":
        return [None] * len(sequence)
    total = [0.0] * num_frames
    factors: list[list[float] | None] = []
    for window in sequence:
        weights = fuse_weights(fuse_method, len(window), sigma=sigma)
        window_factors = []
        for frame, weight in zip(window, weights, strict=True):
            total[frame] += weight
            window_factors.append(weight / total[frame])
        factors.append(window_factors)
    return factors


def _fuse_into(
    out: torch.Tensor,
    eps: torch.Tensor,
    window: Window,
    factors: list[float] | None,
    num_frames: int,
    num_groups: int,
) -> None:
    """Applies one window's result to the fused buffer, in window-position order."""
    sets = _distinct_position_sets(window)
    for positions in sets:
        frames = [window[p] for p in positions]
        rows = window_rows([frames], num_frames, num_groups).to(out.device)
        values = eps
        if len(sets) > 1:
            pick = [g * len(window) + p for g in range(num_groups) for p in positions]
            values = eps.index_select(0, torch.tensor(pick, device=eps.device))
        if factors is None or all(factors[p] == 1.0 for p in positions):
            # overwrite, or frames no earlier window covered: the running mean is the value itself
            out.index_copy_(0, rows, values.to(out.dtype))
            continue
        scale = torch.tensor([factors[p] for p in positions] * num_groups, dtype=torch.float64)
        scale = scale.to(device=out.device, dtype=out.dtype).view(-1, *([1] * (out.dim() - 1)))
        current = out.index_select(0, rows)
        current.add_(values.to(out.dtype).sub(current).mul_(scale))
        out.index_copy_(0, rows, current)


def _distinct_position_sets(window: Window) -> list[list[int]]:
    """Window positions split so no frame repeats within a set (dilated windows can repeat frames)."""
    seen: dict[int, int] = {}
    sets: list[list[int]] = []
    for position, frame in enumerate(window):
        occurrence = seen.get(frame, 0)
        seen[frame] = occurrence + 1
        if occurrence == len(sets):
            sets.append([])
        sets[occurrence].append(position)
    return sets


def freenoise(
    noise: torch.Tensor, *, context_size: int, overlap: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """FreeNoise rescheduling along dim 0 (frames): after the first window, each chunk of
    ``S = context_size - overlap`` frames becomes a seeded shuffle of the frames ``context_size``
    earlier (already rescheduled ones included; the last chunk is truncated). Returns a new tensor.
    """
    frames = noise.shape[0]
    chunk = context_size - overlap
    if context_size < 1 or not 0 <= overlap < context_size:
        raise ValueError(f"context_size={context_size}, overlap={overlap}: need 0 <= overlap < context_size")
    result = noise.clone()
    for start in range(context_size, frames, chunk):
        source = torch.arange(start - context_size, start - context_size + chunk)
        order = torch.randperm(chunk, generator=generator, device=generator.device if generator else None)
        source = source[order.cpu()][: frames - start]
        result[start : start + len(source)] = result[source.to(result.device)]
    return result


@dataclass(frozen=True)
class WindowPlan:
    """How a video's frames are split into context windows, fused, and packed into model calls.

    ``overlap`` is in frames (never ``-1``: :meth:`from_params` resolves it); ``max_frames_per_call``
    bounds the frames of consecutive equal windows packed into one call (``None``: one window each).
    """

    size: int = 16
    stride: int = 1
    overlap: int = 4
    closed_loop: ClosedLoop = "R-P"
    schedule: ContextSchedule = "uniform"
    fuse_method: FuseMethod = "pyramid"
    max_frames_per_call: int | None = None

    @classmethod
    def from_params(cls, params: AnimateDiffParams, *, max_frames_per_call: int | None = None) -> WindowPlan:
        """The plan of the extension's context options."""
        return cls(
            size=params.batch_size,
            stride=params.stride,
            overlap=context.resolve_overlap(params.overlap, params.batch_size),
            closed_loop=params.closed_loop,
            schedule=params.context_schedule,
            fuse_method=params.fuse_method,
            max_frames_per_call=max_frames_per_call,
        )

    def windows(self, step: int, num_frames: int) -> list[list[int]]:
        """The windows of one denoiser step (``step`` rotates the uniform schedule)."""
        return context.windows(
            step, num_frames, self.size, self.stride, self.overlap, self.closed_loop, schedule=self.schedule
        )

    def call_count(self, frame_windows: Sequence[Sequence[int]]) -> int:
        """Model calls that :meth:`denoise` makes for these windows."""
        return len(plan_calls(frame_windows, max_frames_per_call=self.max_frames_per_call))

    def denoise(
        self,
        denoise: DenoiseFn,
        frame_windows: Sequence[Sequence[int]],
        *,
        num_frames: int,
        num_groups: int,
        sigma: float | None = None,
    ) -> torch.Tensor:
        """:func:`denoise_windows` over ``frame_windows`` with this plan's fuse and call packing."""
        return denoise_windows(
            denoise,
            frame_windows,
            num_frames=num_frames,
            num_groups=num_groups,
            fuse_method=self.fuse_method,
            max_frames_per_call=self.max_frames_per_call,
            sigma=sigma,
        )

    def freenoise(self, noise: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """FreeNoise rescheduling of ``noise`` for this plan's window size and overlap."""
        return freenoise(noise, context_size=self.size, overlap=self.overlap, generator=generator)
