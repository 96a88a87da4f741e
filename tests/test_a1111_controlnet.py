"""ControlNet video-to-video in the fake host with a fake sd-webui-controlnet (tests/fake_webui/controlnet):
units fed with AnimateDiff's frames, the frame-count rule, temporary frames, refusals, and the
per-window hint slicing checked against an unwindowed run."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lib_animatediff.a1111.control_hints import ControlHints, hint_rows
from lib_animatediff.a1111.script_args import RequestError
from lib_animatediff.params import AnimateDiffParams
from tests.fake_webui import controlnet as fake_controlnet
from tests.fake_webui.harness import Extension, load_extension
from tests.fixtures.mm_checkpoints import make_state_dict, write_checkpoint
from tests.fixtures.tiny_models import block_channels

pytestmark = pytest.mark.fakehost

STILL_MODEL = "still_v3.safetensors"  # motion layers that add nothing: windows cannot change a frame


@pytest.fixture
def ext(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Extension:
    extension = load_extension(monkeypatch, tmp_path)
    state = make_state_dict("v3", channels=block_channels("sd15"), seed=3)
    for key in state:
        if "proj_out" in key:
            state[key] = torch.zeros_like(state[key])
    write_checkpoint(extension.model_dir / STILL_MODEL, state)
    return extension


@pytest.fixture
def cn(monkeypatch: pytest.MonkeyPatch, ext: Extension):
    return fake_controlnet.install(monkeypatch)


def write_frames(folder: Path, count: int, *, start: int = 0) -> Path:
    """``count`` 16x16 frames, frame i a flat grey of level 10·(start + i) + 30."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        level = 10 * (start + i) + 30
        Image.fromarray(np.full((16, 16, 3), level, np.uint8)).save(folder / f"{i:03d}.png")
    return folder


def params(**changes) -> AnimateDiffParams:
    values = dict(
        model=STILL_MODEL, enable=True, video_length=8, batch_size=4, overlap=1,
        closed_loop="N", format=("GIF", "Frame"),
    )  # fmt: skip
    values.update(changes)
    return AnimateDiffParams(**values)


def generate(ext: Extension, cn, units: list, ad_params: AnimateDiffParams, **kwargs):
    """Run one generation with ControlNet; returns (p, frames as arrays, the ControlNet script)."""
    script = cn.Script()
    p = ext.processing(ad_params, is_api=True, **kwargs)
    fake_controlnet.attach(p, script, units)
    try:
        res = ext.host.processing.process_images(p)
    finally:
        p.close()
    frames = np.stack([np.asarray(image, dtype=np.int16) for image in res.images[1:]])
    return p, frames, script


def frame_levels(hint: torch.Tensor) -> list[int]:
    """The frame index each hint row shows (rows are flat greys written by write_frames)."""
    return [round((float(row.mean()) * 255 - 30) / 10) for row in hint]


def test_windowed_hints_follow_each_window_and_match_an_unwindowed_run(ext, cn, tmp_path) -> None:
    frames = write_frames(tmp_path / "frames", 8)
    external = cn.__dict__["external_code"]
    _, windowed, script = generate(ext, cn, [external.ControlNetUnit()], params(video_path=str(frames)))
    for call in script.hooks[0].calls:
        (hint,) = call["hints"]
        assert hint.shape[0] == call["rows"] == 8  # cond + uncond of one 4-frame window
        levels = frame_levels(hint)
        assert levels[:4] == levels[4:] and levels[:4] == sorted(set(levels[:4]))
    assert script.hooks[0].control_params[0].hint_cond.shape[0] == 16
    assert script.hooks[0].control_params[0].hint_cond.device.type == "cpu"
    _, whole, script = generate(
        ext, cn, [external.ControlNetUnit()], params(video_path=str(frames), batch_size=8)
    )
    assert all(frame_levels(call["hints"][0]) == [*range(8), *range(8)] for call in script.hooks[0].calls)
    assert np.abs(windowed - whole).max() <= 1
    reversed_frames = tmp_path / "reversed"
    reversed_frames.mkdir()
    for i, path in enumerate(sorted(frames.iterdir())):
        (reversed_frames / f"{7 - i:03d}.png").write_bytes(path.read_bytes())
    _, other, _ = generate(ext, cn, [external.ControlNetUnit()], params(video_path=str(reversed_frames)))
    assert np.abs(windowed - other).max() > 4  # the hints matter, so a wrong slice would show


def test_without_batched_cond_uncond_each_half_gets_its_window_rows(ext, cn, tmp_path) -> None:
    ext.host.shared.opts.batch_cond_uncond = False
    frames = write_frames(tmp_path / "frames", 8)
    unit = cn.__dict__["external_code"].ControlNetUnit()
    _, windowed, script = generate(ext, cn, [unit], params(video_path=str(frames)))
    assert {call["rows"] for call in script.hooks[0].calls} == {4}
    assert script.hooks[0].control_params[0].hint_cond.shape[0] == 8
    for call in script.hooks[0].calls:
        levels = frame_levels(call["hints"][0])
        assert levels == sorted(set(levels))  # one window's frames, in order
    unit = cn.__dict__["external_code"].ControlNetUnit()
    _, whole, script = generate(ext, cn, [unit], params(video_path=str(frames), batch_size=8))
    assert all(frame_levels(call["hints"][0]) == list(range(8)) for call in script.hooks[0].calls)
    assert np.abs(windowed - whole).max() <= 1


def test_units_with_their_own_image_or_disabled_are_left_alone(ext, cn, tmp_path) -> None:
    frames = write_frames(tmp_path / "frames", 8)
    external = cn.__dict__["external_code"]
    image = np.full((16, 16, 3), 90, np.uint8)
    single = external.ControlNetUnit(image=image)
    disabled = external.ControlNetUnit(enabled=False)
    p, _, script = generate(ext, cn, [single, disabled], params(video_path=str(frames)))
    units = p.script_args[-2:]
    assert units[0].input_mode.name == "SIMPLE" and units[0].image is image and not units[0].animatediff_batch
    assert units[1].batch_images is None and not units[1].animatediff_batch
    (param,) = script.hooks[0].control_params
    assert param.hint_cond.shape[0] == 1  # one image for every frame, never sliced


def test_the_shortest_batch_unit_bounds_the_video_and_longer_ones_are_trimmed(
    ext, cn, tmp_path, caplog
) -> None:
    external = cn.__dict__["external_code"]
    short = write_frames(tmp_path / "short", 6)
    long = write_frames(tmp_path / "long", 10)
    units = [
        external.ControlNetUnit(batch_images=str(long), input_mode=external.InputMode.BATCH),
        external.ControlNetUnit(batch_images=str(short), input_mode=external.InputMode.BATCH),
    ]
    with caplog.at_level(logging.INFO):
        _, frames, script = generate(ext, cn, units, params(video_length=8))
    assert frames.shape[0] == 6
    assert "ControlNet unit 1 has 6 frames: the video is shortened from 8 to 6 frames" in caplog.text
    assert "ControlNet unit 0: using the first 6 of its 10 frames" in caplog.text
    assert [param.hint_cond.shape[0] for param in script.hooks[0].control_params] == [12, 12]


def test_automatic_length_takes_the_shortest_unit_and_a_set_length_trims_units(ext, cn, tmp_path) -> None:
    external = cn.__dict__["external_code"]
    folder = write_frames(tmp_path / "frames", 7)
    unit = external.ControlNetUnit(batch_images=str(folder), input_mode=external.InputMode.BATCH)
    _, frames, _ = generate(ext, cn, [unit], params(video_length=0, batch_size=8))
    assert frames.shape[0] == 7
    unit = external.ControlNetUnit(batch_images=str(folder), input_mode=external.InputMode.BATCH)
    _, frames, script = generate(ext, cn, [unit], params(video_length=5))
    assert frames.shape[0] == 5
    assert frame_levels(script.hooks[0].control_params[0].hint_cond[:5]) == [0, 1, 2, 3, 4]


def test_keyframe_units_do_not_bound_the_video(ext, cn, tmp_path) -> None:
    external = cn.__dict__["external_code"]
    folder = write_frames(tmp_path / "keys", 2, start=3)
    unit = external.ControlNetUnit(
        batch_images=f"{folder}\nkeyframe:0,5", input_mode=external.InputMode.BATCH
    )
    _, frames, script = generate(ext, cn, [unit], params(video_length=8))
    assert frames.shape[0] == 8
    hint = script.hooks[0].control_params[0].hint_cond[:8]
    assert [int(row.abs().sum() > 0) for row in hint] == [1, 0, 0, 0, 0, 1, 0, 0]


def test_mask_path_goes_to_batch_units_without_a_mask(ext, cn, tmp_path) -> None:
    external = cn.__dict__["external_code"]
    frames = write_frames(tmp_path / "frames", 8)
    masks = write_frames(tmp_path / "masks", 8)
    own = external.ControlNetUnit(
        batch_images=str(frames), batch_mask_dir="mine", input_mode=external.InputMode.BATCH
    )
    p, _, _ = generate(
        ext, cn, [external.ControlNetUnit(), own], params(video_path=str(frames), mask_path=str(masks))
    )
    assert [unit.batch_mask_dir for unit in p.script_args[-2:]] == [str(masks), "mine"]


def test_a_video_source_is_decoded_to_temporary_frames_removed_when_p_closes(ext, cn, tmp_path) -> None:
    import imageio.v2 as imageio

    video = tmp_path / "clip.mp4"
    with imageio.get_writer(video, fps=8, macro_block_size=1) as writer:
        for i in range(5):
            writer.append_data(np.full((16, 16, 3), 40 * i + 20, np.uint8))
    seen = {}
    host_process = cn.Script.process

    def spy(self, p, *args):
        seen["folder"] = Path(p.script_args[-1].batch_images)
        seen["files"] = sorted(seen["folder"].iterdir())
        return host_process(self, p, *args)

    cn.Script.process = spy
    unit = cn.__dict__["external_code"].ControlNetUnit()
    _, frames, _ = generate(ext, cn, [unit], params(video_length=0, video_source=str(video)))
    assert frames.shape[0] == 5 and len(seen["files"]) == 5
    assert seen["folder"].parent == ext.host.root / "tmp" / "animatediff-frames"
    assert not seen["folder"].exists()


def test_temporary_frames_are_removed_after_an_error_too(ext, cn, tmp_path) -> None:
    import imageio.v2 as imageio

    video = tmp_path / "clip.mp4"
    with imageio.get_writer(video, fps=8, macro_block_size=1) as writer:
        for i in range(4):
            writer.append_data(np.full((16, 16, 3), 50 * i, np.uint8))

    def fail(module, args):
        raise RuntimeError("boom")

    ext.sd_model.model.diffusion_model.register_forward_pre_hook(fail)
    unit = cn.__dict__["external_code"].ControlNetUnit()
    with pytest.raises(RuntimeError, match="boom"):
        generate(ext, cn, [unit], params(video_length=0, video_source=str(video)))
    assert list((ext.host.root / "tmp" / "animatediff-frames").iterdir()) == []


def test_a_unit_without_image_and_no_video_is_refused_before_anything_changes(ext, cn) -> None:
    unit = cn.__dict__["external_code"].ControlNetUnit()
    with pytest.raises(RequestError, match=r"video_source.*ControlNet unit 0 has no image"):
        generate(ext, cn, [unit], params())
    assert unit.input_mode.name == "SIMPLE" and unit.batch_images is None and not unit.animatediff_batch


def test_api_dict_units_are_converted_and_their_batch_folders_confined(ext, cn, tmp_path) -> None:
    inside = write_frames(ext.host.root / "cn-frames", 8)
    p, frames, _ = generate(ext, cn, [{"batch_images": str(inside)}], params())
    (unit,) = p.script_args[-1:]
    assert unit.input_mode.name == "BATCH" and unit.animatediff_batch and frames.shape[0] == 8
    outside = write_frames(tmp_path.parent / f"{tmp_path.name}-outside", 8)
    with pytest.raises(RequestError, match=r"ControlNet unit 0 batch_images.*outside the allowed folders"):
        generate(ext, cn, [{"batch_images": str(outside)}], params())


def test_hires_pass_hints_are_sliced_too(ext, cn, tmp_path) -> None:
    frames = write_frames(tmp_path / "frames", 8)
    unit = cn.__dict__["external_code"].ControlNetUnit()
    _, result, script = generate(
        ext, cn, [unit], params(video_path=str(frames)), enable_hr=True, hr_scale=2.0, width=64, height=64
    )
    hr_calls = [call for call in script.hooks[0].calls if call["hints"][0].shape[-1] == 128]
    assert hr_calls and {call["rows"] for call in hr_calls} == {8}
    assert all(call["hints"][0].shape[0] == 8 for call in hr_calls)
    assert script.hooks[0].control_params[0].hr_hint_cond.shape[0] == 16
    assert result.shape[1:3] == (128, 128)


def test_without_controlnet_installed_nothing_is_fed(ext) -> None:
    p = ext.processing(params(video_path="unused"))
    assert ControlHints.of(p, 8).control_params == []


def test_hint_row_mapping_by_hand() -> None:
    rows = torch.tensor([2, 3, 4, 7, 8, 9])  # frames 2,3,4 of groups 0 and 1 in a 2x5 batch
    assert hint_rows(rows, 5, 10).tolist() == [2, 3, 4, 7, 8, 9]
    assert hint_rows(rows, 5, 5).tolist() == [2, 3, 4, 2, 3, 4]
    assert hint_rows(torch.tensor([7, 8, 9, 12, 13, 14]), 5, 10).tolist() == [7, 8, 9, 2, 3, 4]  # groups 1, 2
    assert hint_rows(rows, 5, 1) is None and hint_rows(rows, 5, 7) is None


def test_hints_are_put_back_after_a_failing_window() -> None:
    class Param:
        hint_cond = torch.arange(8.0).view(8, 1)
        hr_hint_cond = None

    param = Param()
    full = param.hint_cond
    hints = ControlHints([param], num_frames=4)
    with pytest.raises(RuntimeError), hints.window(torch.tensor([1, 2, 5, 6]), torch.device("cpu")):
        assert param.hint_cond.view(-1).tolist() == [1.0, 2.0, 5.0, 6.0]
        raise RuntimeError("window failed")
    assert param.hint_cond is full


def test_ip_adapter_embeddings_and_lllite_images_follow_the_window_where_controlnet_keeps_them() -> None:
    from typing import NamedTuple

    class ImageEmbed(NamedTuple):  # sd-webui-controlnet scripts/ipadapter/ipadapter_model.py
        cond_emb: torch.Tensor
        uncond_emb: torch.Tensor

    class LLLiteModule:
        def __init__(self) -> None:
            self.cond_image = torch.arange(4.0).view(4, 1)

        def set_cond_image(self, image: torch.Tensor) -> None:
            self.cond_image = image

    class Model:
        def __init__(self) -> None:
            self.image_emb = ImageEmbed(torch.arange(8.0).view(8, 1, 1), torch.zeros(1, 1, 1))
            self.modules = {"lllite": LLLiteModule()}

    class Param:
        def __init__(self) -> None:
            self.control_model = Model()
            self.hint_cond = None

    param = Param()
    embedding, lllite = param.control_model.image_emb, param.control_model.modules["lllite"]
    full_image = lllite.cond_image
    with ControlHints([param], num_frames=4).window(torch.tensor([2, 3, 6, 7]), torch.device("cpu")):
        assert param.control_model.image_emb.cond_emb.view(-1).tolist() == [2.0, 3.0, 6.0, 7.0]
        assert param.control_model.image_emb.uncond_emb is embedding.uncond_emb
        assert lllite.cond_image.view(-1).tolist() == [2.0, 3.0, 2.0, 3.0]
    assert param.control_model.image_emb is not embedding and param.control_model.image_emb == embedding
    assert lllite.cond_image is full_image


def test_an_img2img_batch_feeds_its_frames_and_gives_inpaint_units_its_masks(ext, cn, tmp_path) -> None:
    external = cn.__dict__["external_code"]
    frames = write_frames(tmp_path / "in", 4)  # 16x16, resized to the 64x64 generation
    masks = write_frames(tmp_path / "masks", 4)
    inpaint, plain = external.ControlNetUnit(module="inpaint_only"), external.ControlNetUnit()
    p = ext.processing(
        params(video_length=0), img2img=True, is_api=True, denoising_strength=0.7, width=64, height=64
    )
    script = cn.Script()
    fake_controlnet.attach(p, script, [inpaint, plain])
    try:
        ext.host.img2img.process_batch(p, str(frames), "", str(masks), p.script_args)
    finally:
        p.close()
    fed_inpaint, fed_plain = p.script_args[-2:]
    assert fed_inpaint.batch_images == f"{frames}\nmask:{masks}"
    assert fed_inpaint.batch_mask_dir == str(masks)  # ControlNet read the mask line
    assert fed_plain.batch_images == str(frames)
    assert [param.hint_cond.shape[0] for param in script.hooks[0].control_params] == [8, 8]
