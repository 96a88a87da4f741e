"""What the A1111 glue writes, in the fake host: A1111's ``enable_pnginfo`` decides whether files carry
the infotext, and the infotext names the interpolation that really ran (FILM only with its model)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lib_animatediff.params import AnimateDiffParams
from tests.fake_webui.harness import MODEL_NAME, Extension, load_extension
from tests.fixtures.film_standins import DtProbe, save_film

pytestmark = [pytest.mark.fakehost, pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")]

FRAMES = 4


@pytest.fixture
def ext(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Extension:
    return load_extension(monkeypatch, tmp_path)


def video_params(**changes) -> AnimateDiffParams:
    values = dict(
        model=MODEL_NAME, enable=True, video_length=FRAMES, batch_size=FRAMES, closed_loop="N",
        format=("GIF", "PNG", "TXT"),
    )  # fmt: skip
    values.update(changes)
    return AnimateDiffParams(**values)


def written(ext: Extension) -> list[Path]:
    return sorted((ext.host.root / "outputs" / "AnimateDiff").rglob("*"))


@pytest.mark.parametrize("pnginfo", [True, False])
def test_enable_pnginfo_decides_whether_files_carry_the_infotext(ext: Extension, pnginfo: bool) -> None:
    ext.host.shared.opts.enable_pnginfo = pnginfo
    ext.host.processing.process_images(ext.processing(video_params()))
    files = written(ext)
    (gif,) = [path for path in files if path.suffix == ".gif"]
    frames = [path for path in files if path.suffix == ".png"]
    texts = [path for path in files if path.suffix == ".txt"]
    assert len(frames) == FRAMES
    with Image.open(gif) as image:
        assert (b"AnimateDiff" in image.info.get("comment", b"")) is pnginfo
    with Image.open(frames[0]) as image:
        assert ("AnimateDiff" in image.info.get("parameters", "")) is pnginfo
    assert len(texts) == (1 if pnginfo else 0)


def test_film_without_its_model_runs_and_is_named_as_optical_flow(
    ext: Extension, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="lib_animatediff"):
        res = ext.host.processing.process_images(ext.processing(video_params(interp="FILM", interp_x=2)))
    deforum = Path(ext.host.paths.models_path) / "Deforum" / "film_interpolation"
    assert f"put it into {deforum}" in caplog.text
    assert "interp: Optical flow" in res.info and "interp: FILM" not in res.info
    (gif,) = [path for path in written(ext) if path.suffix == ".gif"]
    with Image.open(gif) as image:
        assert image.n_frames == 7  # 4 frames, X = 2: one in-between per gap


def test_film_in_the_models_folder_is_used_and_named(ext: Extension) -> None:
    save_film(DtProbe(), Path(ext.host.paths.models_path))
    params = video_params(interp="FILM", interp_x=2, format=("GIF",))
    res = ext.host.processing.process_images(ext.processing(params))
    assert "interp: FILM" in res.info
    (gif,) = [path for path in written(ext) if path.suffix == ".gif"]
    with Image.open(gif) as image:
        image.seek(1)  # DtProbe paints every in-between flat grey at 255 * dt
        middle = np.asarray(image.convert("RGB"))
    assert np.all(np.abs(middle.astype(int) - 128) <= 2)
