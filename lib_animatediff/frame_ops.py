"""Frame-list operations applied before interpolation and saving: reverse options and ping-pong.

The original v1.5-v1.9.3 had a "Reverse" checkbox group (Gradio ``type="index"``; the API field
``reverse`` took the indices) with three choices: 0 "Add Reverse Frame" appends the reversed
frames; 1 "Remove head" drops the first of those reversed frames (the duplicate of the last frame);
2 "Remove tail" drops their last (the duplicate of the first frame). 1 and 2 only act together with
0. From v1.9.4 the same ping-pong is closed-loop mode ``A`` when the video fits in one context
window: ``f0..f15`` becomes ``f0..f15, f14..f1``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TypeVar

Frame = TypeVar("Frame")

REVERSE_CHOICES = ("Add Reverse Frame", "Remove head", "Remove tail")


def _reverse_indices(options: Iterable[int | str]) -> set[int]:
    if isinstance(options, str | bytes):
        raise ValueError(
            f"reverse: expected a list of indices or names from {REVERSE_CHOICES}, got {options!r}"
        )
    indices = set()
    for option in options:
        if isinstance(option, str) and option in REVERSE_CHOICES:
            indices.add(REVERSE_CHOICES.index(option))
        elif isinstance(option, int) and not isinstance(option, bool) and 0 <= option < len(REVERSE_CHOICES):
            indices.add(option)
        else:
            raise ValueError(
                f"reverse: unknown option {option!r}; expected 0, 1, 2 or one of {REVERSE_CHOICES}"
            )
    return indices


def add_reverse(frames: Sequence[Frame], options: Iterable[int | str]) -> list[Frame]:
    """Apply the original's reverse options (indices or choice names; see the module docstring).

    >>> add_reverse("abcd", [0])
    ['a', 'b', 'c', 'd', 'd', 'c', 'b', 'a']
    >>> add_reverse("abcd", ["Add Reverse Frame", "Remove head", "Remove tail"])
    ['a', 'b', 'c', 'd', 'c', 'b']
    """
    chosen = _reverse_indices(options)
    if 0 not in chosen:
        return list(frames)
    tail = list(frames)[::-1]
    if 1 in chosen:
        tail = tail[1:]
    if 2 in chosen:
        tail = tail[:-1]
    return [*frames, *tail]


def ping_pong(frames: Sequence[Frame]) -> list[Frame]:
    """Frames followed by their reverse without its first and last frame (closed-loop ``A``).

    >>> ping_pong([0, 1, 2, 3])
    [0, 1, 2, 3, 2, 1]
    >>> ping_pong([0, 1])
    [0, 1]
    """
    return add_reverse(frames, (0, 1, 2))


def apply_closed_loop(
    frames: Sequence[Frame], closed_loop: str, *, video_length: int, batch_size: int
) -> list[Frame]:
    """The original's output step: ping-pong when ``closed_loop == "A"`` and the video fits in one
    context window (``video_length <= batch_size``); otherwise the frames unchanged."""
    if closed_loop == "A" and video_length <= batch_size:
        return ping_pong(frames)
    return list(frames)
