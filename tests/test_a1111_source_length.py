"""``video_length`` 0 with a video source in the fake A1111 host: the video takes the source's frame
count (``video_path`` folder over ``video_source`` file); bad sources are refused naming the field."""

from __future__ import annotations

from pathlib import Path

import imageio_ffmpeg
import numpy as np
import pytest
from PIL import Image

from lib_animatediff.a1111.script_args import RequestError
from lib_animatediff.params import AnimateDiffParams
from tests.fake_webui.harness import MODEL_NAME, Extension, load_extension

pytestmark = pytest.mark.fakehost

CONTEXT = 4


@pytest.fixture
def ext(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Extension:
    return load_extension(monkeypatch, tmp_path)


def write_mp4(path: Path, count: int) -> Path:
    writer = imageio_ffmpeg.write_frames(
        str(path), (16, 16), fps=8, codec="libx264", macro_block_size=1, ffmpeg_log_level="error"
    )
    writer.send(None)
    for index in range(count):
        writer.send(np.full((16, 16, 3), 30 * index, np.uint8))
    writer.close()
    return path


def write_frame_folder(folder: Path, count: int) -> Path:
    folder.mkdir(parents=True)
    for index in range(count):
        Image.new("RGB", (8, 8), (20 * index, 0, 0)).save(folder / f"{index}.png")
    return folder


def auto_length(**changes) -> AnimateDiffParams:
    values = dict(
        model=MODEL_NAME, enable=True, video_length=0, batch_size=CONTEXT, closed_loop="N", format=("GIF",)
    )
    values.update(changes)
    return AnimateDiffParams(**values)


def generate_gif_frames(ext: Extension, params: AnimateDiffParams, **kwargs) -> tuple[int, str]:
    res = ext.host.processing.process_images(ext.processing(params, **kwargs))
    (gif,) = sorted((ext.host.root / "outputs" / "AnimateDiff").rglob("*.gif"))
    with Image.open(gif) as image:
        return image.n_frames, res.info


def test_the_frame_folder_sets_the_length_and_wins_over_the_video(ext: Extension) -> None:
    video = write_mp4(ext.host.root / "clip.mp4", 3)
    folder = write_frame_folder(ext.host.root / "frames", CONTEXT + 1)
    frames, info = generate_gif_frames(ext, auto_length(video_source=str(video), video_path=str(folder)))
    assert frames == CONTEXT + 1
    assert f"video_length: {CONTEXT + 1}, " in info and f"batch_size: {CONTEXT}, " in info


def test_a_video_shorter_than_the_context_sets_both_lengths(ext: Extension) -> None:
    video = write_mp4(ext.host.root / "clip.mp4", 3)
    frames, info = generate_gif_frames(ext, auto_length(video_source=str(video)), is_api=True)
    assert frames == 3
    assert "video_length: 3, " in info and "batch_size: 3, " in info


def test_without_a_source_zero_means_one_context(ext: Extension) -> None:
    frames, _ = generate_gif_frames(ext, auto_length())
    assert frames == CONTEXT


def refusal(ext: Extension, request: dict) -> RequestError:
    with pytest.raises(RequestError) as caught:
        ext.host.processing.process_images(ext.processing(request, is_api=True))
    assert not (ext.host.root / "outputs").exists()
    return caught.value


@pytest.mark.parametrize(
    ("field", "make_value"),
    [
        ("video_source", lambda root: str(root / "missing.mp4")),
        ("video_path", lambda root: str(write_frame_folder(root / "empty", 0))),
        ("video_path", lambda root: "/"),
    ],
    ids=["missing", "empty-folder", "outside-the-data-folder"],
)
def test_a_bad_source_is_refused_naming_the_field(ext: Extension, field: str, make_value) -> None:
    request = {"model": MODEL_NAME, "enable": True, "video_length": 0, field: make_value(ext.host.root)}
    assert refusal(ext, request).field == field


def test_an_api_video_outside_the_data_and_models_folders_is_refused(ext: Extension) -> None:
    paths = ext.host.paths
    paths.data_path, paths.models_path = str(ext.host.root / "webui"), str(ext.host.root / "webui" / "models")
    video = write_mp4(ext.host.root / "clip.mp4", 2)
    request = {"model": MODEL_NAME, "enable": True, "video_source": str(video)}
    error = refusal(ext, request)
    assert error.field == "video_source" and "outside the allowed folders" in str(error)


def test_a_source_longer_than_the_frame_limit_is_refused(ext: Extension) -> None:
    ext.host.shared.opts.animatediff_max_frames = 2
    video = write_mp4(ext.host.root / "clip.mp4", 3)
    request = {"model": MODEL_NAME, "enable": True, "batch_size": 2, "video_source": str(video)}
    error = refusal(ext, request)
    assert error.field == "video_source" and "more than 2 frames" in str(error)
