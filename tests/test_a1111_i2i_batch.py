"""img2img Batch tab with AnimateDiff in the fake A1111 1.10 host: a folder (or uploaded files) of
images becomes ONE video whose frames start from those images, with or without ControlNet."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from lib_animatediff.a1111 import i2i_batch, script_flow
from lib_animatediff.coercion import ParamsError
from lib_animatediff.params import AnimateDiffParams
from tests.fake_webui.harness import MODEL_NAME, Extension, load_extension

pytestmark = pytest.mark.fakehost

SIDE = 64  # 8x8 latents, the smallest the tiny UNet takes


@pytest.fixture
def ext(monkeypatch: pytest.MonkeyPatch, tmp_path) -> Extension:
    return load_extension(monkeypatch, tmp_path)


@pytest.fixture
def seen(ext: Extension, monkeypatch: pytest.MonkeyPatch) -> list[dict]:
    """What every img2img sampling call starts from: init latent, latent mask, the run's params."""
    records: list[dict] = []
    cls = ext.host.processing.StableDiffusionProcessingImg2Img
    host_sample = cls.sample

    def spy(self, *args, **kwargs):
        run = script_flow.current_run(self)
        mask = None if self.mask is None else self.mask.clone()
        records.append({"init": self.init_latent.clone(), "mask": mask, "params": run and run.params})
        return host_sample(self, *args, **kwargs)

    monkeypatch.setattr(cls, "sample", spy)
    return records


def video_params(**changes) -> AnimateDiffParams:
    values = dict(
        model=MODEL_NAME, enable=True, video_length=0, batch_size=4, overlap=1, closed_loop="N",
        format=("GIF",), fuse_method="flat",
    )  # fmt: skip
    values.update(changes)
    return AnimateDiffParams(**values)


def write_images(folder: Path, count: int, *, seed: int = 0, prefix: str = "frame") -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for index in range(count):
        path = folder / f"{prefix}{index:02}.png"
        Image.fromarray(rng.integers(0, 256, (SIDE, SIDE, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    return paths


def write_masks(folder: Path, names: list[str]) -> list[Path]:
    """Mask k covers the left k+1 eighths of the image."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index, name in enumerate(names):
        mask = np.zeros((SIDE, SIDE), dtype=np.uint8)
        mask[:, : (index + 1) * SIDE // 8] = 255
        path = folder / name
        Image.fromarray(mask).save(path)
        paths.append(path)
    return paths


def encode(ext: Extension, path: Path) -> torch.Tensor:
    """The init latent of one file, computed here: pixels in [-1, 1] through the fake VAE."""
    pixels = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) / 127.5 - 1.0
    return ext.sd_model.encode_first_stage(torch.from_numpy(pixels).permute(2, 0, 1)[None])[0]


def latent_mask(path: Path) -> torch.Tensor:
    """1 where the image is kept: the mask's complement at latent size, rounded."""
    small = Image.open(path).convert("L").resize((SIDE // 8, SIDE // 8))
    return 1.0 - torch.from_numpy(np.around(np.asarray(small, dtype=np.float32) / 255.0))


def gif_frames(ext: Extension, folder: Path | None = None) -> list[int]:
    counts = []
    for path in sorted(((folder or ext.host.root / "outputs") / "AnimateDiff").rglob("*.gif")):
        with Image.open(path) as gif:
            counts.append(gif.n_frames)
    return counts


def run_batch(ext: Extension, params: AnimateDiffParams | None, source, masks: str = "", **kwargs):
    p = ext.processing(params, img2img=True, denoising_strength=0.7, width=SIDE, height=SIDE, **kwargs)
    processed = ext.host.img2img.process_batch(p, source, "", masks, p.script_args)
    return p, processed


def test_a_folder_becomes_one_video_with_one_init_latent_per_image(ext: Extension, seen, tmp_path) -> None:
    paths = write_images(tmp_path / "in", 5)
    p = ext.processing(video_params(), img2img=True, denoising_strength=0.7, width=SIDE, height=SIDE)
    out = tmp_path / "out"
    processed = ext.host.img2img.process_batch(p, str(tmp_path / "in"), f" {out} ", "", p.script_args)
    # A1111's output folder option: the video and any frames go there, named after the first image
    assert gif_frames(ext, out) == [5]
    (call,) = seen
    assert torch.allclose(call["init"], torch.stack([encode(ext, path) for path in paths]), atol=1e-6)
    assert call["params"].video_length == 5 and call["params"].batch_size == 4
    # the input folder stands in for the video path so ControlNet units without input use the frames
    assert call["params"].video_path == str(tmp_path / "in")
    assert processed.images[0].endswith(".gif")
    assert p.batch_size == 1 and not hasattr(p, script_flow.RUN_ATTRIBUTE)
    assert not hasattr(p, i2i_batch.BATCH_ATTRIBUTE)
    assert p.outpath_samples == str(out)
    assert p.override_settings["samples_filename_pattern"] == "frame00-[generation_number]"
    assert p.override_settings["save_to_dirs"] is False


def test_called_directly_without_animatediff_enabled_it_refuses(ext: Extension, seen, tmp_path) -> None:
    write_images(tmp_path / "in", 2)
    p = ext.processing(None, img2img=True)
    with pytest.raises(ParamsError, match="enable"):
        i2i_batch.animatediff_i2i_batch(p, str(tmp_path / "in"), "", "", p.script_args)
    assert seen == [] and p.init_images == []


def test_without_animatediff_the_batch_is_a1111s_one_generation_per_image(
    ext: Extension, seen, tmp_path
) -> None:
    write_images(tmp_path / "in", 3)
    _, processed = run_batch(ext, None, str(tmp_path / "in"))
    assert len(seen) == 3 and all(call["params"] is None for call in seen)
    assert gif_frames(ext) == []
    assert len(processed.images) == 3


def test_one_mask_serves_every_frame(ext: Extension, seen, tmp_path) -> None:
    write_images(tmp_path / "in", 4)
    (mask,) = write_masks(tmp_path / "masks", ["only.png"])
    run_batch(ext, video_params(), str(tmp_path / "in"), masks=str(tmp_path / "masks"))
    (call,) = seen
    assert torch.equal(call["mask"], latent_mask(mask).expand(4, -1, -1))
    assert gif_frames(ext) == [4]


def test_one_mask_per_image_gives_per_frame_latent_masks(ext: Extension, seen, tmp_path) -> None:
    # frames in folder order (1/z.., 2/a..) differ from the masks' name order: pairing is by file stem
    paths = write_images(tmp_path / "in" / "1", 2, prefix="z") + write_images(
        tmp_path / "in" / "2", 2, seed=1, prefix="a"
    )
    names = [path.name for path in paths]
    masks = dict(zip(names, write_masks(tmp_path / "masks", names), strict=True))
    run_batch(ext, video_params(), str(tmp_path / "in"), masks=str(tmp_path / "masks"), inpainting_fill=3)
    (call,) = seen
    expected = torch.stack([latent_mask(masks[name]).expand(4, -1, -1) for name in names])
    assert torch.equal(call["mask"], expected)
    # fill mode 3 ("latent nothing") zeroes each frame's masked area of its own latent
    encoded = torch.stack([encode(ext, path) for path in paths])
    assert torch.allclose(call["init"], encoded * expected, atol=1e-6)
    assert gif_frames(ext) == [4]


def test_a_mask_count_that_fits_neither_rule_is_refused_before_anything_runs(
    ext: Extension, seen, tmp_path
) -> None:
    write_images(tmp_path / "in", 4)
    write_masks(tmp_path / "masks", ["a.png", "b.png"])
    p = ext.processing(video_params(), img2img=True, width=SIDE, height=SIDE)
    with pytest.raises(ParamsError, match="inpaint_mask_dir") as error:
        ext.host.img2img.process_batch(p, str(tmp_path / "in"), "", str(tmp_path / "masks"), p.script_args)
    assert error.value.field == "inpaint_mask_dir" and "2 masks" in str(error.value)
    assert seen == [] and p.init_images == [] and not hasattr(p, i2i_batch.BATCH_ATTRIBUTE)


def test_an_empty_missing_or_unreadable_input_is_refused_naming_input(ext: Extension, tmp_path) -> None:
    (tmp_path / "empty").mkdir()
    write_images(tmp_path / "broken", 2)
    (tmp_path / "broken" / "frame01.png").write_bytes(b"not a png")
    p = ext.processing(video_params(), img2img=True)
    sources = (str(tmp_path / "empty"), str(tmp_path / "nowhere"), [SimpleNamespace(name="/nope.png")])
    for source in (*sources, str(tmp_path / "broken")):
        with pytest.raises(ParamsError, match="input"):
            ext.host.img2img.process_batch(p, source, "", "", p.script_args)


def test_more_images_than_video_length_keeps_the_first_ones(ext: Extension, seen, tmp_path) -> None:
    paths = write_images(tmp_path / "in", 6)
    run_batch(ext, video_params(video_length=3, batch_size=4), str(tmp_path / "in"))
    (call,) = seen
    assert torch.allclose(call["init"], torch.stack([encode(ext, path) for path in paths[:3]]), atol=1e-6)
    assert (call["params"].video_length, call["params"].batch_size) == (3, 3)
    assert gif_frames(ext) == [3]


def test_fewer_images_than_video_length_shortens_the_video_and_context(
    ext: Extension, seen, tmp_path
) -> None:
    write_images(tmp_path / "in", 3)
    run_batch(ext, video_params(video_length=8, batch_size=4, overlap=3), str(tmp_path / "in"))
    (call,) = seen
    assert (call["params"].video_length, call["params"].batch_size) == (3, 3)
    assert call["params"].overlap == 2  # still smaller than the shortened context
    assert gif_frames(ext) == [3]


def test_uploaded_files_become_one_video_in_upload_order(ext: Extension, seen, tmp_path) -> None:
    paths = write_images(tmp_path / "uploads", 3)
    uploads = [SimpleNamespace(name=str(path)) for path in paths[::-1]]
    run_batch(ext, video_params(), uploads)
    (call,) = seen
    assert torch.allclose(call["init"], torch.stack([encode(ext, p) for p in paths[::-1]]), atol=1e-6)
    assert call["params"].video_path == ""  # uploads have no folder of their own
    assert gif_frames(ext) == [3]


def test_a_controlnet_style_hijack_reaches_the_shim(ext: Extension, seen, tmp_path, monkeypatch) -> None:
    """sd-webui-controlnet (loaded after us) wraps process_batch and imports our shim itself."""
    img2img = ext.host.img2img
    ours = img2img.process_batch
    used = []

    def controlnet_hijack(p, *args, **kwargs):
        if i2i_batch.enabled_params(p) is not None:
            shim = importlib.import_module("scripts.animatediff_i2ibatch")
            used.append("shim")
            return shim.animatediff_i2i_batch(p, *args, **kwargs)
        used.append("original")
        return ours(p, *args, **kwargs)

    monkeypatch.setattr(img2img, "process_batch", controlnet_hijack)
    write_images(tmp_path / "in", 4)
    run_batch(ext, video_params(), str(tmp_path / "in"))
    run_batch(ext, None, str(tmp_path / "in"))
    assert used == ["shim", "original"]
    assert gif_frames(ext) == [4] and len(seen) == 1 + 4
    # a script reload installs ours on top of ControlNet's; unloading takes exactly that layer off
    i2i_batch.install()
    assert img2img.process_batch.__wrapped__ is controlnet_hijack
    i2i_batch.uninstall()
    assert img2img.process_batch is controlnet_hijack


def test_install_is_idempotent_and_uninstall_restores_a1111s_function(ext: Extension) -> None:
    img2img = ext.host.img2img
    ours = img2img.process_batch
    assert getattr(ours, i2i_batch.WRAPPER_MARK)
    i2i_batch.install()
    assert img2img.process_batch is ours
    ext.host.script_callbacks.script_unloaded_callback()
    assert img2img.process_batch is ours.__wrapped__
    assert not getattr(img2img.process_batch, i2i_batch.WRAPPER_MARK, False)


def test_per_frame_masks_run_the_host_init_once_per_frame_and_paste_each_crop_back() -> None:
    """Host-independent: each frame's init sees its own image, mask and seed; results stack in order."""
    calls = []
    p = SimpleNamespace(
        init_images=["a", "b", "c"], image_mask=["ma", "mb", "mc"], batch_size=3, batch_index=0
    )

    def host_init(prompts, seeds, subseeds):
        calls.append((p.init_images, p.image_mask, p.batch_size, seeds))
        p.init_latent = torch.full((1, 4, 2, 2), float(seeds[0]))
        p.mask = torch.zeros(4, 2, 2)
        p.nmask = torch.ones(4, 2, 2)
        p.image_conditioning = torch.zeros(1, 5, 1, 1)
        p.overlay_images = [p.init_images[0].upper()]
        p.paste_to = (seeds[0], 0, 8, 8)

    i2i_batch.init_per_frame_masks(p, host_init)(["x"] * 3, [10, 11, 12], [10, 11, 12])
    assert calls == [(["a"], "ma", 1, [10]), (["b"], "mb", 1, [11]), (["c"], "mc", 1, [12])]
    assert p.init_latent[:, 0, 0, 0].tolist() == [10.0, 11.0, 12.0] and p.mask.shape == (3, 4, 2, 2)
    assert p.overlay_images == ["A", "B", "C"]
    assert (p.init_images, p.image_mask, p.batch_size) == (["a", "b", "c"], ["ma", "mb", "mc"], 3)
    p.batch_index = 2
    i2i_batch.select_frame_crop(p)
    assert p.paste_to == (12, 0, 8, 8)


def test_png_info_of_the_first_frame_fills_the_chosen_fields(ext: Extension, seen, tmp_path) -> None:
    from PIL import PngImagePlugin

    paths = write_images(tmp_path / "in", 3)
    info = PngImagePlugin.PngInfo()
    info.add_text(
        "parameters", "a dog\nNegative prompt: ugly\nSteps: 3, Sampler: Euler, CFG scale: 5, Seed: 42"
    )
    Image.open(paths[0]).save(paths[0], pnginfo=info)
    p = ext.processing(video_params(), img2img=True, denoising_strength=0.7, width=SIDE, height=SIDE)
    props = ["Prompt", "Seed", "CFG scale"]
    i2i_batch.animatediff_i2i_batch(
        p, str(tmp_path / "in"), "", "", p.script_args, use_png_info=True, png_info_props=props
    )
    assert (p.prompt, p.seed, p.cfg_scale, p.steps, p.negative_prompt) == (
        "a tiny cat a dog",
        42,
        5.0,
        2,
        "blurry",
    )
    assert p.all_seeds[:3] == [42, 43, 44] and len(seen) == 1


def test_loading_the_script_imports_the_shim_controlnet_imports_later(ext: Extension) -> None:
    assert (
        sys.modules["scripts.animatediff_i2ibatch"].animatediff_i2i_batch is i2i_batch.animatediff_i2i_batch
    )
