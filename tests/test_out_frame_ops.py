"""Reverse options and closed-loop ping-pong, against hand-worked examples."""

from __future__ import annotations

import pytest

from lib_animatediff.frame_ops import REVERSE_CHOICES, add_reverse, apply_closed_loop, ping_pong

FRAMES = ["f0", "f1", "f2", "f3"]


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ([], ["f0", "f1", "f2", "f3"]),
        ([0], ["f0", "f1", "f2", "f3", "f3", "f2", "f1", "f0"]),
        ([0, 1], ["f0", "f1", "f2", "f3", "f2", "f1", "f0"]),
        ([0, 2], ["f0", "f1", "f2", "f3", "f3", "f2", "f1"]),
        ([0, 1, 2], ["f0", "f1", "f2", "f3", "f2", "f1"]),
        ([2, 0, 1], ["f0", "f1", "f2", "f3", "f2", "f1"]),  # order of the choices does not matter
        ([1], ["f0", "f1", "f2", "f3"]),  # head/tail removal acts on the added reverse only
        ([1, 2], ["f0", "f1", "f2", "f3"]),
        (["Add Reverse Frame", "Remove tail"], ["f0", "f1", "f2", "f3", "f3", "f2", "f1"]),
    ],
)
def test_reverse_options(options: list, expected: list) -> None:
    assert add_reverse(FRAMES, options) == expected


def test_choice_names_are_the_originals() -> None:
    assert REVERSE_CHOICES == ("Add Reverse Frame", "Remove head", "Remove tail")


@pytest.mark.parametrize("bad", [[3], [-1], ["remove head"], [True], "0", [None]])
def test_bad_reverse_option(bad: object) -> None:
    with pytest.raises(ValueError, match="reverse"):
        add_reverse(FRAMES, bad)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("frames", "expected"),
    [
        ([], []),
        (["a"], ["a"]),
        (["a", "b"], ["a", "b"]),  # both reversed frames are removed: nothing to append
        (["a", "b", "c"], ["a", "b", "c", "b"]),
        ([f"f{i}" for i in range(16)], [f"f{i}" for i in range(16)] + [f"f{i}" for i in range(14, 0, -1)]),
    ],
)
def test_ping_pong(frames: list, expected: list) -> None:
    assert ping_pong(frames) == expected


def test_ping_pong_does_not_modify_input() -> None:
    frames = ["a", "b", "c"]
    ping_pong(frames)
    assert frames == ["a", "b", "c"]


@pytest.mark.parametrize(
    ("closed_loop", "video_length", "batch_size", "expected_len"),
    [
        ("A", 4, 16, 6),
        ("A", 16, 16, 6),
        ("A", 17, 16, 4),
        ("R-P", 4, 16, 4),
        ("R+P", 4, 16, 4),
        ("N", 4, 16, 4),
    ],
)
def test_closed_loop_ping_pong_only_for_a_within_one_window(
    closed_loop: str, video_length: int, batch_size: int, expected_len: int
) -> None:
    result = apply_closed_loop(FRAMES, closed_loop, video_length=video_length, batch_size=batch_size)
    assert len(result) == expected_len and result[:4] == FRAMES
