"""Context windows: hand-worked lists from the reference, N-mode rules, properties (hypothesis)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lib_animatediff.context import CLOSED_LOOP_MODES, ordered_halving, windows


def span(a: int, b: int) -> list[int]:
    """Frames a..b inclusive."""
    return list(range(a, b + 1))


def test_ordered_halving_is_the_bit_reversed_fraction():
    assert [ordered_halving(s) for s in range(9)] == [0, 0.5, 0.25, 0.75, 0.125, 0.625, 0.375, 0.875, 0.0625]


def test_ordered_halving_stays_below_one_so_huge_steps_still_cover_every_frame():
    step = (1 << 54) - 1  # its reversed bits as a float64 of the full 64 bits would round up to 1.0
    assert ordered_halving(step) == 1 - 2**-53
    assert {f for window in windows(step, 2, 1, 1, 0, "R-P") for f in window} == {0, 1}


# Reference (original-extension.md §6.2 / algorithms-and-formats.md §2.1): N=32, L=16, o=4, stride 1.
HAND_WORKED_R_P = {
    0: [span(0, 15), span(12, 27), span(24, 31) + span(0, 7)],
    1: [span(16, 31), span(28, 31) + span(0, 11), span(8, 23)],
    2: [span(8, 23), span(20, 31) + span(0, 3), span(0, 15)],
}
HAND_WORKED_N = {
    0: [span(0, 15), span(12, 27), span(16, 31), span(0, 15)],
    1: [span(16, 31), span(16, 31), span(0, 15), span(8, 23)],
    2: [span(8, 23), span(16, 31), span(0, 15)],
}


@pytest.mark.parametrize("step", [0, 1, 2])
@pytest.mark.parametrize("mode", ["R-P", "R+P"])
def test_reference_r_p_windows(step, mode):
    assert windows(step, 32, 16, 1, 4, mode) == HAND_WORKED_R_P[step]


@pytest.mark.parametrize("step", [0, 1, 2])
def test_reference_n_mode_windows_with_duplicates(step):
    assert windows(step, 32, 16, 1, 4, "N") == HAND_WORKED_N[step]


def test_reference_n24():
    assert windows(0, 24, 16, 1, 4, "R-P") == [span(0, 15), span(12, 23) + span(0, 3)]
    assert windows(1, 24, 16, 1, 4, "R-P") == [span(12, 23) + span(0, 3), span(0, 15)]
    assert windows(2, 24, 16, 1, 4, "R-P") == [span(6, 21), span(18, 23) + span(0, 9)]


def test_dilated_level_for_n64_stride2():
    result = windows(0, 64, 16, 2, 4, "R-P")
    assert result[:5] == [span(s, s + 15) for s in (0, 12, 24, 36, 48)]
    assert result[5:] == [
        list(range(0, 31, 2)),
        list(range(28, 59, 2)),
        [56, 58, 60, 62, *range(0, 23, 2)],
    ]


def test_a_mode_runs_one_overlap_further():
    # N=64: R-P starts stop before 64-4, so A adds the wrapping window starting at 60.
    assert len(windows(0, 64, 16, 1, 4, "R-P")) == 5
    assert windows(0, 64, 16, 1, 4, "A")[-1] == span(60, 63) + span(0, 11)


@pytest.mark.parametrize(("n", "count"), [(24, 2), (32, 3), (48, 4), (64, 5), (128, 11)])
def test_window_counts_per_step(n, count):
    assert len(windows(0, n, 16, 1, 4, "R-P")) == count


def test_short_video_is_one_window():
    assert windows(5, 16, 16, 1, 4, "A") == [span(0, 15)]
    assert windows(5, 10, 16, 3, 4, "N") == [span(0, 9)]


def test_overlap_minus_one_is_a_quarter_of_the_context():
    assert windows(3, 50, 16, 1, -1, "R-P") == windows(3, 50, 16, 1, 4, "R-P")


def test_stride_is_clamped_to_the_useful_levels():
    # ceil(log2(64/16)) + 1 = 3 levels at most.
    assert windows(0, 64, 16, 10**6, 4, "R-P") == windows(0, 64, 16, 3, 4, "R-P")
    assert windows(0, 64, 16, 3, 4, "R-P") != windows(0, 64, 16, 2, 4, "R-P")


def test_n_mode_gap_is_covered_by_a_leading_head_window():
    # The original leaves frame 0 uncovered here (its prediction would be zero).
    original = windows(16, 25, 16, 1, 4, "N", cover_gaps=False)
    assert 0 not in {f for w in original for f in w}
    covered = windows(16, 25, 16, 1, 4, "N")
    assert covered == [span(0, 15), *original]


def test_static_and_batched_schedules():
    assert windows(7, 32, 16, 1, 4, "R-P", schedule="static") == [span(0, 15), span(12, 27), span(16, 31)]
    static64 = windows(0, 64, 16, 1, 4, "A", schedule="static")
    assert len(static64) == 5 and static64[-1] == span(48, 63)
    assert windows(3, 40, 16, 1, 4, "N", schedule="batched") == [span(0, 15), span(16, 31), span(32, 39)]


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"num_frames": 0}, "num_frames"),
        ({"context_size": 0}, "context_size"),
        ({"overlap": 16}, "overlap"),
        ({"overlap": -2}, "overlap"),
        ({"stride": 0}, "stride"),
        ({"closed_loop": "n"}, "closed_loop"),
        ({"step": -1}, "step"),
        ({"schedule": "looped"}, "schedule"),
    ],
)
def test_bad_arguments_name_the_field(kwargs, field):
    args = {"step": 0, "num_frames": 32, "context_size": 16, "stride": 1, "overlap": 4, "closed_loop": "R-P"}
    args.update(kwargs)
    with pytest.raises(ValueError, match=field):
        windows(**args)


@settings(max_examples=300, deadline=None)
@given(
    n=st.integers(1, 200),
    size=st.integers(1, 32),
    overlap_fraction=st.floats(0, 0.99),
    stride=st.integers(1, 4),
    mode=st.sampled_from(CLOSED_LOOP_MODES),
    step=st.one_of(st.integers(0, 64), st.integers(0, 2**63)),
    schedule=st.sampled_from(["uniform", "static", "batched"]),
)
def test_window_properties(n, size, overlap_fraction, stride, mode, step, schedule):
    overlap = int(overlap_fraction * size)
    result = windows(step, n, size, stride, overlap, mode, schedule=schedule)
    assert result == windows(step, n, size, stride, overlap, mode, schedule=schedule)  # deterministic
    assert {f for window in result for f in window} == set(range(n))  # every frame, every step
    for window in result:
        assert all(0 <= f < n for f in window)
        if n <= size:
            assert window == list(range(n))
        elif schedule == "batched":
            assert 1 <= len(window) <= size
        else:
            assert len(window) == size
