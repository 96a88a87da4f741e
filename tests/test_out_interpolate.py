"""Frame interpolation: the frame-count rule, FILM (with tiny TorchScript stand-ins) and optical flow."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lib_animatediff import interpolate as interp
from lib_animatediff.interpolate import frames_between, interpolate, interpolated_count
from tests.fixtures.film_standins import DtProbe, LinearMotionFilm, save_film

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")

BACKGROUND = (30, 30, 30)
SQUARE = (220, 60, 40)
SIZE = 12


def square_frame(left: int, top: int = 20, height: int = 64, width: int = 96) -> np.ndarray:
    frame = np.empty((height, width, 3), np.uint8)
    frame[:] = BACKGROUND
    frame[top : top + SIZE, left : left + SIZE] = SQUARE
    return frame


def square_box(frame: np.ndarray) -> tuple[int, int, int, int]:
    """Left, right, top, bottom of the pixels more red than half-way between background and square."""
    mask = frame[..., 0].astype(int) > (BACKGROUND[0] + SQUARE[0]) // 2
    ys, xs = np.nonzero(mask)
    return xs.min(), xs.max(), ys.min(), ys.max()


@pytest.mark.parametrize(
    ("n", "x", "between", "total"),
    [
        (16, 10, 10, 166),  # round(144/15 = 9.6) = 10
        (16, 2, 1, 31),  # round(16/15) = 1
        (8, 3, 2, 22),  # round(16/7 = 2.29)
        (3, 2, 2, 7),  # round(1.5) = 2 (half to even)
        (5, 2, 1, 9),  # round(5/4 = 1.25) = 1
        (5, 3, 2, 13),  # round(10/4 = 2.5) = 2 (half to even)
        (2, 1, 0, 2),
        (1, 10, 0, 1),
        (0, 10, 0, 0),
    ],
)
def test_frame_count_rule(n: int, x: int, between: int, total: int) -> None:
    assert frames_between(n, x) == between
    assert interpolated_count(n, x) == total


def test_output_length_and_originals_kept_in_place() -> None:
    frames = [square_frame(10 + 4 * i) for i in range(3)]
    out = interpolate(frames, 3, "optical flow")
    k = frames_between(3, 3)
    assert len(out) == interpolated_count(3, 3) == 2 * (k + 1) + 1
    for i, frame in enumerate(frames):
        np.testing.assert_array_equal(out[i * (k + 1)], frame)


def test_pil_in_pil_out_and_nothing_to_do() -> None:
    frames = [Image.fromarray(square_frame(10 + 4 * i)) for i in range(2)]
    out = interpolate(frames, 2, "optical flow")  # 2 frames, X = 2: round(2 / 1) = 2 in-betweens
    assert len(out) == 4 and all(isinstance(f, Image.Image) for f in out)
    assert interpolate(frames, 1) == frames
    assert interpolate(frames[:1], 10) == frames[:1]


@pytest.mark.parametrize("speed", [8, 12])
def test_optical_flow_moves_the_square(speed: int) -> None:
    """A square moving ``speed`` px per frame: every in-between shows one whole square at the
    linear position (within 1 px), not a cross-fade of two half-bright squares."""
    frames = [square_frame(10 + speed * i) for i in range(3)]
    out = interpolate(frames, 3, "Optical flow")
    k = frames_between(3, 3)
    assert k == 3  # round((9 - 3) / 2)
    for j, frame in enumerate(out):
        expected_left = 10 + speed * j / (k + 1)
        left, right, top, bottom = square_box(frame)
        assert abs(left - expected_left) <= 1 and abs(right - (expected_left + SIZE - 1)) <= 1, j
        assert (top, bottom) == (20, 20 + SIZE - 1)
        centre = frame[20 + SIZE // 2, round(expected_left) + SIZE // 2].astype(int)
        assert np.abs(centre - SQUARE).max() <= 12  # solid colour, not a blend


def test_film_moves_the_square(tmp_path: Path) -> None:
    save_film(LinearMotionFilm(), tmp_path / "deforum")
    speed = 10
    frames = [square_frame(10 + speed * i, height=50, width=90) for i in range(3)]  # padded to 64x128
    out = interpolate(frames, 5, "FILM", film_dirs=[tmp_path / "missing", tmp_path / "deforum"])
    k = frames_between(3, 5)
    assert len(out) == 2 * (k + 1) + 1
    for j, frame in enumerate(out):
        expected_left = 10 + speed * j / (k + 1)
        left, right, top, bottom = square_box(frame)
        assert abs(left - expected_left) <= 1 and abs(right - (expected_left + SIZE - 1)) <= 1, j
        assert (top, bottom) == (20, 20 + SIZE - 1)  # the padding was cropped off symmetrically
        centre = frame[20 + SIZE // 2, round(expected_left) + SIZE // 2].astype(int)
        assert np.abs(centre - SQUARE).max() <= 2  # RGB order and [0, 1] scaling round-trip


def test_film_dt_and_order_follow_deforum(tmp_path: Path) -> None:
    """2 frames, X = 3: k = 4 in-betweens in the gap [0, 5], made in Deforum's order: 2 from (0, 5)
    with dt 0.4, 1 from (0, 2) with dt 0.5, 3 from (2, 5) with dt 1/3, 4 from (3, 5) with dt 0.5.
    DtProbe paints each in-between with its dt, so the grey levels are 255 * dt."""
    save_film(DtProbe(), tmp_path)
    frames = [np.zeros((8, 8, 3), np.uint8), np.full((8, 8, 3), 255, np.uint8)]
    out = interpolate(frames, 3, "auto", film_dirs=[tmp_path])
    assert [int(frame[0, 0, 0]) for frame in out] == [0, 128, 102, 85, 128, 255]
    assert all(np.all(frame == frame[0, 0, 0]) for frame in out)
    assert interp._bisection_plan(4) == [(2, 0, 5), (1, 0, 2), (3, 2, 5), (4, 3, 5)]


def test_film_missing_falls_back_with_notice(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    frames = [square_frame(10 + 8 * i) for i in range(2)]
    with caplog.at_level(logging.WARNING):
        out = interpolate(frames, 3, "film", film_dirs=[tmp_path])
    assert "film_net_fp16.pt not found" in caplog.text
    assert len(out) == 6  # 2 frames, X = 3: 4 in-betweens


def test_optical_flow_ignores_present_film_model(tmp_path: Path) -> None:
    save_film(DtProbe(), tmp_path)
    frames = [square_frame(10), square_frame(18)]
    out = interpolate(frames, 3, "optical flow", film_dirs=[tmp_path])
    assert square_box(out[2])[0] in (13, 14, 15)  # a moved square, not DtProbe's flat grey


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"interp_x": 0}, "interp_x"),
        ({"interp_x": -1}, "interp_x"),
        ({"interp_x": 2.5}, "interp_x"),
        ({"interp_x": True}, "interp_x"),
        ({"interp_x": 10**6}, "2000000 frames"),
        ({"method": "Off"}, "method"),
        ({"method": "rife"}, "method"),
    ],
)
def test_bad_arguments(kwargs: dict, field: str) -> None:
    call = {"interp_x": 2, "method": "auto"} | kwargs
    with pytest.raises(ValueError, match=field):
        interpolate([square_frame(0), square_frame(4)], call["interp_x"], call["method"])
