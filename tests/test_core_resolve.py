"""resolve(params, facts): every rewrite of the params before sampling, in one place, with the
video source decoded at most once."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from lib_animatediff import resolve as resolve_module
from lib_animatediff import video_source
from lib_animatediff.coercion import ParamsError
from lib_animatediff.interpolate import FILM_MODEL_NAME
from lib_animatediff.params import AnimateDiffParams
from lib_animatediff.resolve import HostFacts, resolve
from tests.test_out_video_source import write_video


def frame_folder(path: Path, count: int) -> Path:
    path.mkdir()
    for index in range(count):
        Image.new("RGB", (8, 8), (index, 0, 0)).save(path / f"{index}.png")
    return path


def params(**changes) -> AnimateDiffParams:
    return AnimateDiffParams(**{"enable": True, "model": "mm.safetensors", **changes})


def test_without_facts_the_params_only_get_validated_and_a_window_plan() -> None:
    run = resolve(params(video_length=24, batch_size=16, overlap=-1), HostFacts())
    assert run.params.video_length == 24 and run.plan.size == 16 and run.plan.overlap == 4
    assert run.source_count is None


def test_length_zero_without_a_source_is_one_context_window() -> None:
    assert resolve(params(video_length=0, batch_size=12), HostFacts()).params.video_length == 12


def test_length_zero_takes_a_shorter_folders_count_and_shortens_the_context(tmp_path) -> None:
    folder = frame_folder(tmp_path / "frames", 6)
    run = resolve(params(video_length=0, batch_size=16, video_path=str(folder)), HostFacts())
    assert (run.params.video_length, run.params.batch_size, run.source_count) == (6, 6, 6)


def test_an_img2img_batch_sets_length_context_overlap_and_the_folder(tmp_path) -> None:
    facts = HostFacts(batch_frames=5, batch_folder=str(tmp_path))
    run = resolve(params(video_length=0, batch_size=16, overlap=8), facts)
    assert (run.params.video_length, run.params.batch_size, run.params.overlap) == (5, 5, 4)
    assert run.params.video_path == str(tmp_path)
    fewer = resolve(params(video_length=3, batch_size=16), facts).params
    assert (fewer.video_length, fewer.batch_size) == (3, 3)


def test_the_shortest_controlnet_unit_bounds_the_video() -> None:
    facts = HostFacts(unit_frames=((0, 20), (2, 9)))
    assert resolve(params(video_length=12, batch_size=16), facts).params.video_length == 9
    assert resolve(params(video_length=0, batch_size=8), facts).params.video_length == 9
    assert resolve(params(video_length=6, batch_size=4), facts).params.video_length == 6


def test_a_video_needed_for_its_length_and_for_controlnet_is_counted_once(tmp_path, monkeypatch) -> None:
    video = tmp_path / "clip.mp4"
    write_video(video, 7, 8)
    reads = []
    real_read = video_source.count_video_frames

    def counting_read(*args, **kwargs):
        reads.append(kwargs.get("max_frames"))
        return real_read(*args, **kwargs)

    monkeypatch.setattr(resolve_module.video_source, "count_video_frames", counting_read)
    facts = HostFacts(source_frames_for=1, unit_frames=((0, 30),), max_frames=100)
    run = resolve(params(video_length=0, batch_size=16, video_source=str(video)), facts)
    assert reads == [101]  # once, up to one frame more than the limit
    assert (run.params.video_length, run.params.batch_size, run.source_count) == (7, 7, 7)


def test_a_given_length_counts_only_its_frames_and_only_for_controlnet(tmp_path, monkeypatch) -> None:
    video = tmp_path / "clip.mp4"
    write_video(video, 9, 8)
    run = resolve(params(video_length=4, batch_size=4, video_source=str(video)), HostFacts())
    assert run.source_count is None
    fed = resolve(
        params(video_length=4, batch_size=4, video_source=str(video)), HostFacts(source_frames_for=0)
    )
    assert fed.source_count == 4 and fed.params.video_length == 4


def test_a_unit_needing_frames_without_a_source_names_video_source() -> None:
    with pytest.raises(ParamsError, match="ControlNet unit 3 has no image") as caught:
        resolve(params(video_length=8, batch_size=8), HostFacts(source_frames_for=3))
    assert caught.value.field == "video_source"


def test_a_source_longer_than_the_frame_limit_is_refused_naming_the_field(tmp_path) -> None:
    folder = frame_folder(tmp_path / "frames", 5)
    with pytest.raises(ParamsError, match="more than 4 frames") as caught:
        resolve(params(video_length=0, video_path=str(folder)), HostFacts(max_frames=4))
    assert caught.value.field == "video_path"


def test_an_empty_folder_is_refused(tmp_path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(ParamsError, match="no image files"):
        resolve(params(video_length=0, video_path=str(tmp_path / "empty")), HostFacts())


def test_film_is_kept_only_when_its_model_file_is_found(tmp_path) -> None:
    film = params(video_length=8, batch_size=8, interp="FILM", interp_x=2)
    assert resolve(film, HostFacts(film_dirs=(tmp_path,))).params.interp == "Optical flow"
    (tmp_path / FILM_MODEL_NAME).write_bytes(b"model")
    assert resolve(film, HostFacts(film_dirs=(tmp_path,))).params.interp == "FILM"


def test_call_packing_reaches_the_window_plan() -> None:
    run = resolve(params(video_length=32, batch_size=8), HostFacts(max_frames_per_call=24))
    assert run.plan.max_frames_per_call == 24 and run.plan.call_count(run.plan.windows(0, 32)) == 2
