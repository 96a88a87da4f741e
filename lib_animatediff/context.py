"""Context windows: which frames the UNet sees together at one denoiser step.

``windows(step, num_frames, context_size, stride, overlap, closed_loop)`` reproduces the original
extension's ``uniform`` scheduler exactly, including its quirks:

* the window grid is rotated every step by ``round(N * h(step))`` where ``h`` is the "ordered halving"
  (bit-reversed) fraction of the step counter, so seams move between steps;
* windows wrap around the end of the video (frame indices modulo N) in every mode except the
  contiguous level of ``N``; ``A`` runs the window starts one overlap further;
* ``stride`` counts dilation levels (1 → contiguous only, 2 → also every 2nd frame, ...), clamped to
  ``ceil(log2(N / L)) + 1``; dilated windows may hold a frame twice when ``L·d > N``;
* in ``N`` mode a wrapping contiguous window is replaced by the first window ``[0, L)`` and/or the
  last ``[N-L, N)``, which yields duplicate windows (the fuser skips their model calls);
* the original's ``N`` rule sometimes leaves the first few frames in no window at all (e.g. N=25,
  L=16, overlap 4 at step 16 misses frame 0), so their prediction is zero for that step. Such steps
  get the head window ``[0, L)`` put *first* here (later windows still overwrite the covered frames
  as before); ``cover_gaps=False`` gives the original's lists unchanged. The missed frames always
  lie in ``[0, L)`` (checked for N < 100, L <= 32, every overlap, steps 0..16 and two large ones);
* ``N <= L`` gives one window holding every frame (the original generates at least L frames, so the
  host passes ``num_frames = max(video_length, L)``).

Beyond the original, ``schedule="static"`` (fixed windows ``[0, L), [L-o, 2L-o), ...`` with the last one
aligned to the end) and ``schedule="batched"`` (non-overlapping ``[0, L), [L, 2L), ...``, the last one
shorter); both ignore ``step``, ``stride`` and ``closed_loop``. Windows are plain lists of ints.
"""

from __future__ import annotations

import math

from lib_animatediff.options import CLOSED_LOOP_MODES, CONTEXT_SCHEDULES


def ordered_halving(step: int) -> float:
    """The step's 64 bits reversed, read as a fraction of 2**64 (0, .5, .25, .75, .125, ...).

    Only the top 53 bits of the fraction are kept, so it is exact and below 1 (rounding the full
    64 bits could give 1.0 for steps of 2**53 and more, and then a frame went uncovered); for every
    smaller step this is the original's value."""
    reversed_bits = int(f"{step & ((1 << 64) - 1):064b}"[::-1], 2)
    return (reversed_bits >> 11) / (1 << 53)


def resolve_overlap(overlap: int, context_size: int) -> int:
    """The original's ``-1`` means a quarter of the context."""
    return context_size // 4 if overlap == -1 else overlap


def windows(
    step: int,
    num_frames: int,
    context_size: int,
    stride: int = 1,
    overlap: int = -1,
    closed_loop: str = "R-P",
    *,
    schedule: str = "uniform",
    cover_gaps: bool = True,
) -> list[list[int]]:
    """The frame-index windows for one denoiser call (``step`` = the denoiser's call counter)."""
    overlap = resolve_overlap(overlap, context_size)
    _check(step, num_frames, context_size, stride, overlap, closed_loop, schedule)
    if num_frames <= context_size:
        return [list(range(num_frames))]
    if schedule == "static":
        return _static(num_frames, context_size, overlap)
    if schedule == "batched":
        return [list(range(s, min(s + context_size, num_frames))) for s in range(0, num_frames, context_size)]
    result = _uniform(step, num_frames, context_size, stride, overlap, closed_loop)
    if cover_gaps and closed_loop == "N" and len({f for window in result for f in window}) < num_frames:
        result.insert(0, list(range(context_size)))
    return result


def _check(
    step: int, num_frames: int, context_size: int, stride: int, overlap: int, closed_loop: str, schedule: str
) -> None:
    for name, value, low in (
        ("step", step, 0),
        ("num_frames", num_frames, 1),
        ("context_size", context_size, 1),
    ):
        if not isinstance(value, int) or value < low:
            raise ValueError(f"{name}={value!r}: expected an integer >= {low}")
    if not isinstance(stride, int) or stride < 1:
        raise ValueError(f"stride={stride!r}: expected an integer >= 1")
    if not isinstance(overlap, int) or not 0 <= overlap < context_size:
        raise ValueError(f"overlap={overlap!r}: expected -1 or 0 <= overlap < context_size ({context_size})")
    if closed_loop not in CLOSED_LOOP_MODES:
        raise ValueError(f"closed_loop={closed_loop!r}: expected one of {', '.join(CLOSED_LOOP_MODES)}")
    if schedule not in CONTEXT_SCHEDULES:
        raise ValueError(f"schedule={schedule!r}: expected one of {', '.join(CONTEXT_SCHEDULES)}")


def _uniform(step: int, n: int, size: int, stride: int, overlap: int, closed_loop: str) -> list[list[int]]:
    levels = min(stride, math.ceil(math.log2(n / size)) + 1)
    fraction = ordered_halving(step)
    pad = round(n * fraction)
    stop = n + pad - (0 if closed_loop == "A" else overlap)
    result: list[list[int]] = []
    for level in range(levels):
        dilation = 1 << level
        starts = range(int(fraction * dilation) + pad, stop, size * dilation - overlap)
        level_windows = [[(j + i * dilation) % n for i in range(size)] for j in starts]
        if closed_loop == "N" and dilation == 1:
            level_windows = _without_wrap(level_windows, n, size, overlap)
        result += level_windows
    return result


def _without_wrap(level_windows: list[list[int]], n: int, size: int, overlap: int) -> list[list[int]]:
    """``N`` mode: wrapping windows become the head window and/or the tail window (original's rule)."""
    head, tail = list(range(size)), list(range(n - size, n))
    result: list[list[int]] = []
    previous_wrapped_late = False
    for window in level_windows:
        wrap = next((i for i in range(1, size) if window[i] < window[i - 1]), None)
        if wrap is None:
            result.append(window)
        elif previous_wrapped_late:
            previous_wrapped_late = False
            result.append(head)
        elif wrap < size - overlap:
            result += [tail, head]
        else:
            previous_wrapped_late = True
            result.append(tail)
    return result


def _static(n: int, size: int, overlap: int) -> list[list[int]]:
    result: list[list[int]] = []
    for start in range(0, n, size - overlap):
        if start + size >= n:
            result.append(list(range(n - size, n)))
            break
        result.append(list(range(start, start + size)))
    return result
