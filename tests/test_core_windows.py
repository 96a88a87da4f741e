"""Windowed denoising and fusion: exactness, weights, packing, duplicates, FreeNoise."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lib_animatediff.context import windows as context_windows
from lib_animatediff.windows import (
    FUSE_METHODS,
    denoise_windows,
    freenoise,
    fuse_weights,
    plan_calls,
    window_rows,
)

N, G, SHAPE = 40, 2, (3, 2, 2)


def recording(fn):
    """Wraps a denoiser, recording (rows, frames) of every call."""
    calls = []

    def denoise(rows, frames):
        calls.append((rows.tolist(), frames))
        return fn(rows, frames)

    return denoise, calls


def per_row_constant(rows, frames):
    """Every output row is a constant that depends only on the batch row (frame and group)."""
    values = torch.sin(rows.double() * 1.7 + 0.3).float() * 3.1
    return values.view(-1, 1, 1, 1).expand(-1, *SHAPE).clone()


def window_dependent(latents):
    """A denoiser whose output depends on the window (position in it and its neighbours)."""

    def denoise(rows, frames):
        x = latents[rows].view(-1, frames, *SHAPE)
        return (x * 0.7 + x.mean(dim=1, keepdim=True).sin()).reshape(-1, *SHAPE)

    return denoise


@pytest.mark.parametrize("method", FUSE_METHODS)
@pytest.mark.parametrize("step", [0, 1, 5])
def test_per_frame_constant_comes_back_exactly(method, step):
    plan = context_windows(step, N, 16, 2, 4, "N")
    out = denoise_windows(per_row_constant, plan, num_frames=N, num_groups=G, fuse_method=method)
    expected = per_row_constant(torch.arange(G * N), 16)
    assert out.shape == (G * N, *SHAPE)
    assert torch.equal(out, expected)


@pytest.mark.parametrize("method", FUSE_METHODS)
@pytest.mark.parametrize("budget", [32, 48, 10**6])
def test_packed_calls_equal_one_window_per_call_bit_for_bit(method, budget):
    latents = torch.randn(G * N, *SHAPE, generator=torch.Generator().manual_seed(0))
    plan = context_windows(3, N, 16, 1, 4, "A")
    sequential, seq_calls = recording(window_dependent(latents))
    packed, packed_calls = recording(window_dependent(latents))
    one = denoise_windows(sequential, plan, num_frames=N, num_groups=G, fuse_method=method)
    many = denoise_windows(
        packed, plan, num_frames=N, num_groups=G, fuse_method=method, max_frames_per_call=budget
    )
    assert torch.equal(one, many)
    assert len(seq_calls) == len(plan)
    assert len(packed_calls) == -(-len(plan) // max(1, min(budget // 16, len(plan))))
    assert all(len(rows) % (G * frames) == 0 and len(rows) <= G * budget for rows, frames in packed_calls)


def test_weighted_mean_against_a_float64_reference():
    latents = torch.randn(G * N, *SHAPE, generator=torch.Generator().manual_seed(1))
    denoise = window_dependent(latents)
    plan = context_windows(1, N, 16, 1, 4, "R-P")
    for method in ("flat", "pyramid", "gauss"):
        out = denoise_windows(denoise, plan, num_frames=N, num_groups=G, fuse_method=method, sigma=2.0)
        total = torch.zeros(G * N, *SHAPE, dtype=torch.float64)
        weight = torch.zeros(G * N, dtype=torch.float64)
        for window in plan:
            rows = window_rows([window], N, G)
            eps = denoise(rows, len(window)).double()
            w = torch.tensor(fuse_weights(method, len(window), sigma=2.0), dtype=torch.float64).repeat(G)
            total.index_add_(0, rows, eps * w.view(-1, 1, 1, 1))
            weight.index_add_(0, rows, w)
        reference = total / weight.view(-1, 1, 1, 1)
        torch.testing.assert_close(out.double(), reference, rtol=1e-5, atol=1e-6)


def test_overwrite_is_last_window_wins_like_the_original():
    latents = torch.randn(N, *SHAPE, generator=torch.Generator().manual_seed(2))
    denoise = window_dependent(latents)
    plan = context_windows(0, 32, 16, 1, 4, "N")  # holds a duplicate window
    out = denoise_windows(denoise, plan, num_frames=32, fuse_method="overwrite")
    reference = torch.zeros(32, *SHAPE)
    for window in plan:  # the original: out[idx] = model(x[idx]) window by window
        reference[window] = denoise(torch.tensor(window), len(window))
    assert torch.equal(out, reference)


def test_duplicate_windows_cost_no_extra_call():
    plan = context_windows(0, 32, 16, 1, 4, "N")
    assert len(plan) == 4 and len({tuple(w) for w in plan}) == 3
    for method in FUSE_METHODS:
        denoise, calls = recording(per_row_constant)
        denoise_windows(denoise, plan, num_frames=32, fuse_method=method)
        assert len(calls) == 3


def test_weighted_fuse_counts_a_duplicate_window_once():
    latents = torch.randn(32, *SHAPE, generator=torch.Generator().manual_seed(3))
    denoise = window_dependent(latents)
    with_duplicate = context_windows(0, 32, 16, 1, 4, "N")
    distinct = [list(w) for w in dict.fromkeys(tuple(w) for w in with_duplicate)]
    a = denoise_windows(denoise, with_duplicate, num_frames=32, fuse_method="pyramid")
    b = denoise_windows(denoise, distinct, num_frames=32, fuse_method="pyramid")
    assert torch.equal(a, b)


def test_dilated_window_repeating_a_frame_counts_both_positions():
    # N=18, L=16, two levels: the dilated window visits frames twice.
    plan = context_windows(0, 18, 16, 2, 4, "R-P")
    assert any(len(set(w)) < len(w) for w in plan)
    out = denoise_windows(per_row_constant, plan, num_frames=18, fuse_method="pyramid")
    assert torch.equal(out, per_row_constant(torch.arange(18), 16))


def test_frames_in_no_window_stay_zero_and_dtype_is_kept():
    def half(rows, frames):
        return torch.ones(len(rows), *SHAPE, dtype=torch.float16)

    out = denoise_windows(half, [[0, 1, 2]], num_frames=5, fuse_method="flat")
    assert out.dtype == torch.float16
    assert out[:3].eq(1).all() and out[3:].eq(0).all()


def test_fuse_weights_follow_the_reference():
    assert fuse_weights("pyramid", 16) == [*range(1, 9), *range(8, 0, -1)]
    assert fuse_weights("pyramid", 5) == [1, 2, 3, 2, 1]
    assert fuse_weights("flat", 4) == [1, 1, 1, 1]
    sharp, wide = fuse_weights("gauss", 16, sigma=0.0), fuse_weights("gauss", 16, sigma=9.0)
    assert sharp[0] == pytest.approx(1e-3) and sharp[7] == pytest.approx(sharp[8])
    assert wide[0] == pytest.approx(math.exp(-0.5 * (7.5 / 9) ** 2))  # std 1 + 8 positions at sigma >= 4
    assert fuse_weights("gauss", 16) == wide  # unknown sigma: the widest


def test_plan_calls_packs_equal_lengths_within_the_budget():
    plan = [[0, 1, 2], [3, 4, 5], [6, 7], [8, 9], [0, 1, 2]]
    assert plan_calls(plan, max_frames_per_call=6) == [[(0, 1, 2), (3, 4, 5)], [(6, 7), (8, 9)]]
    assert plan_calls(plan, max_frames_per_call=2) == [[(0, 1, 2)], [(3, 4, 5)], [(6, 7)], [(8, 9)]]
    assert window_rows([[1, 2]], 10, 2).tolist() == [1, 2, 11, 12]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"fuse_method": "average"}, "fuse_method"),
        ({"max_frames_per_call": 0}, "max_frames_per_call"),
        ({"num_frames": 3}, "outside frames"),
    ],
)
def test_bad_arguments(kwargs, match):
    args = {"num_frames": 8, "fuse_method": "flat"}
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        denoise_windows(per_row_constant, [[0, 1, 2, 3]], **args)


def test_wrong_row_count_from_the_denoiser_is_an_error():
    with pytest.raises(ValueError, match="rows"):
        denoise_windows(lambda rows, frames: torch.zeros(1, *SHAPE), [[0, 1]], num_frames=2)


def test_freenoise_copies_shuffled_earlier_frames():
    noise = torch.arange(40, dtype=torch.float32).view(40, 1, 1, 1).expand(40, 2, 2, 2).clone()
    out = freenoise(noise, context_size=16, overlap=4, generator=torch.Generator().manual_seed(0))
    frame_ids = out[:, 0, 0, 0].long().tolist()
    assert frame_ids[:16] == list(range(16))
    for start in (16, 28):  # chunks of S = 12 frames copy a permutation of the frames 16 earlier
        assert sorted(frame_ids[start : start + 12]) == sorted(frame_ids[start - 16 : start - 4])
    assert torch.equal(noise[:, 0, 0, 0], torch.arange(40, dtype=torch.float32))  # input untouched
    again = freenoise(noise, context_size=16, overlap=4, generator=torch.Generator().manual_seed(0))
    assert torch.equal(out, again)


def test_freenoise_truncates_the_last_chunk():
    noise = torch.arange(20, dtype=torch.float32).view(20, 1, 1, 1)
    out = freenoise(noise, context_size=16, overlap=4, generator=torch.Generator().manual_seed(5))
    assert set(out[16:, 0, 0, 0].long().tolist()) <= set(range(0, 12))
    assert len(set(out[16:, 0, 0, 0].tolist())) == 4


def test_no_windows_is_an_error():
    with pytest.raises(ValueError, match="no windows"):
        denoise_windows(per_row_constant, [], num_frames=8)


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 50),
    size=st.integers(1, 20),
    stride=st.integers(1, 3),
    mode=st.sampled_from(["N", "R-P", "A"]),
    step=st.integers(0, 40),
    method=st.sampled_from(FUSE_METHODS),
    budget=st.integers(1, 64),
)
def test_fusion_properties(n, size, stride, mode, step, method, budget):
    plan = context_windows(step, n, size, stride, size // 4, mode)
    exact = denoise_windows(per_row_constant, plan, num_frames=n, num_groups=G, fuse_method=method)
    assert torch.equal(exact, per_row_constant(torch.arange(G * n), size))
    latents = torch.randn(G * n, *SHAPE, generator=torch.Generator().manual_seed(n))
    one = denoise_windows(window_dependent(latents), plan, num_frames=n, num_groups=G, fuse_method=method)
    packed = denoise_windows(
        window_dependent(latents),
        plan,
        num_frames=n,
        num_groups=G,
        fuse_method=method,
        max_frames_per_call=budget,
    )
    assert torch.equal(one, packed)
