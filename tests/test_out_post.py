"""The post-processing chain both hosts share: ping-pong, interpolation, writers, and the
interpolation method named for what really runs."""

from __future__ import annotations

import numpy as np
from PIL import Image

from lib_animatediff import post
from lib_animatediff.interpolate import FILM_MODEL_NAME, interpolated_count
from lib_animatediff.params import AnimateDiffParams


def frames(count: int) -> list[np.ndarray]:
    return [np.full((16, 16, 3), 20 * index, np.uint8) for index in range(count)]


def test_without_ping_pong_or_interpolation_an_iterator_passes_through_unread() -> None:
    params = AnimateDiffParams(video_length=4, batch_size=16, closed_loop="R-P")
    stream = iter(frames(4))
    finished, count = post.finish(stream, 4, params)
    assert finished is stream and count == 4


def test_closed_loop_a_in_one_window_ping_pongs_the_clip() -> None:
    params = AnimateDiffParams(video_length=4, batch_size=16, closed_loop="A")
    finished, count = post.finish(iter(frames(4)), 4, params)
    assert [int(frame[0, 0, 0]) for frame in finished] == [0, 20, 40, 60, 40, 20]
    assert count == 6


def test_interpolation_follows_the_ping_pong_and_counts_the_frames() -> None:
    params = AnimateDiffParams(
        video_length=4, batch_size=16, closed_loop="A", interp="Optical flow", interp_x=2
    )
    finished, count = post.finish(frames(4), 4, params)
    assert count == len(finished) == interpolated_count(6, 2)
    assert int(finished[0][0, 0, 0]) == 0 and int(finished[-1][0, 0, 0]) == 20


def test_film_without_its_model_is_named_as_optical_flow(tmp_path) -> None:
    params = AnimateDiffParams(interp="FILM", interp_x=2)
    assert post.interpolation_that_runs(params, [tmp_path]).interp == "Optical flow"
    (tmp_path / FILM_MODEL_NAME).write_bytes(b"model")
    assert post.interpolation_that_runs(params, [tmp_path]) is params
    optical = AnimateDiffParams(interp="Optical flow")
    assert post.interpolation_that_runs(optical, []) is optical


def test_write_uses_the_videos_fps_and_loop_count(tmp_path) -> None:
    params = AnimateDiffParams(fps=5, loop_number=2)
    (path,) = post.write(frames(3), tmp_path / "clip", ["GIF"], params, infotext="")
    with Image.open(path) as gif:
        # loop_number counts plays; the GIF's NETSCAPE field counts repeats after the first
        assert gif.n_frames == 3 and gif.info["duration"] == 200 and gif.info["loop"] == 1
