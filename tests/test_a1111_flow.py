"""A whole AnimateDiff generation in the fake A1111 1.10 host (tests/fake_webui), through the real
k-diffusion Euler sampler on the tiny ldm UNet with a tiny motion module."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
import torch
from PIL import Image

from lib_animatediff.a1111.script_args import RequestError
from lib_animatediff.params import AnimateDiffParams
from tests.fake_webui.harness import MODEL_NAME, Extension, load_extension, unet_fingerprint
from tests.fake_webui.sd_model import FakeSDModel
from tests.fixtures.tiny_models import tiny_ldm_unet

pytestmark = pytest.mark.fakehost

FRAMES = 6
CONTEXT = 4


@pytest.fixture
def ext(monkeypatch: pytest.MonkeyPatch, tmp_path) -> Extension:
    return load_extension(monkeypatch, tmp_path)


def video_params(**changes) -> AnimateDiffParams:
    values = dict(
        model=MODEL_NAME, enable=True, video_length=FRAMES, batch_size=CONTEXT, overlap=1,
        closed_loop="N", format=("GIF",), fuse_method="flat",
    )  # fmt: skip
    values.update(changes)
    return AnimateDiffParams(**values)


def record_unet_batches(unet: torch.nn.Module) -> list[int]:
    sizes: list[int] = []
    unet.register_forward_pre_hook(lambda module, args: sizes.append(args[0].shape[0]))
    return sizes


def on_unet_call(ext: Extension, n: int, action) -> list[int]:
    """Run ``action`` (A1111's interrupt / skip) when the UNet is called the ``n``-th time; returns the call log."""
    calls: list[int] = []

    def count(module, args):
        calls.append(1)
        if len(calls) == n:
            action()

    ext.sd_model.model.diffusion_model.register_forward_pre_hook(count)
    return calls


def gifs(ext: Extension) -> list:
    return sorted((ext.host.root / "outputs" / "AnimateDiff").rglob("*.gif"))


def state_of(ext: Extension) -> tuple:
    model = ext.sd_model
    return (
        unet_fingerprint(model.model.diffusion_model),
        model.alphas_cumprod.clone(),
        model.alphas_cumprod_original.clone(),
        "apply_model" in vars(model),
    )


def assert_same_state(before: tuple, after: tuple) -> None:
    assert before[0] == after[0]
    assert torch.equal(before[1], after[1]) and torch.equal(before[2], after[2])
    assert before[3] is after[3] is False


def test_txt2img_writes_a_gif_of_every_frame_and_restores_the_unet(ext: Extension) -> None:
    before = state_of(ext)
    unet = ext.sd_model.model.diffusion_model
    sizes = record_unet_batches(unet)
    p = ext.processing(video_params())
    res = ext.host.processing.process_images(p)
    (gif,) = gifs(ext)
    with Image.open(gif) as image:
        assert image.n_frames == FRAMES
    assert gif.name.endswith(f"-{p.all_seeds[0]}.gif")
    # cond and uncond of one context window per UNet call, never the whole video
    assert sizes and set(sizes) == {2 * CONTEXT}
    assert res.images == [str(gif)]
    assert 'AnimateDiff: "model: tiny_v3.safetensors, video_length: 6' in res.info
    assert "mm_hash: " in res.info
    assert p.batch_size == 1
    assert_same_state(before, state_of(ext))


def test_cond_and_uncond_are_grouped_the_same_whether_a1111_batches_them_or_not(ext: Extension) -> None:
    results = {}
    for batched in (True, False):
        ext.host.shared.opts.batch_cond_uncond = batched
        sizes = record_unet_batches(ext.sd_model.model.diffusion_model)
        p = ext.processing(video_params(format=("GIF", "Frame")), is_api=True)
        res = ext.host.processing.process_images(p)
        results[batched] = np.stack([np.asarray(frame) for frame in res.images[1:]])
        assert set(sizes) == ({2 * CONTEXT} if batched else {CONTEXT})
        for handle in list(ext.sd_model.model.diffusion_model._forward_pre_hooks):
            del ext.sd_model.model.diffusion_model._forward_pre_hooks[handle]
    assert np.array_equal(results[True], results[False])


@pytest.mark.parametrize("error", [RuntimeError("boom in window"), KeyboardInterrupt("boom in window")])
def test_an_exception_half_way_leaves_the_unet_as_it_was(ext: Extension, error: BaseException) -> None:
    baseline_images = [
        np.asarray(image).tolist()
        for image in ext.host.processing.process_images(ext.processing(None, batch_size=2)).images
    ]
    before = state_of(ext)
    unet = ext.sd_model.model.diffusion_model
    calls = []

    def fail_on_third_call(module, args):
        calls.append(1)
        if len(calls) == 3:
            raise error

    handle = unet.register_forward_pre_hook(fail_on_third_call)
    with pytest.raises(type(error), match="boom in window"):
        ext.host.processing.process_images(ext.processing(video_params()))
    handle.remove()
    assert_same_state(before, state_of(ext))
    assert gifs(ext) == []
    # a plain generation afterwards equals one made before AnimateDiff ever ran
    after = ext.host.processing.process_images(ext.processing(None, batch_size=2)).images
    assert [np.asarray(image).tolist() for image in after] == baseline_images


def test_interrupt_between_windows_stops_sampling_and_writes_nothing(ext: Extension) -> None:
    before = state_of(ext)
    calls = on_unet_call(ext, 2, ext.host.shared.state.interrupt)
    ext.host.processing.process_images(ext.processing(video_params(), n_iter=2))
    assert len(calls) == 2  # no window ran after the flag was set
    assert gifs(ext) == []
    assert_same_state(before, state_of(ext))


def test_progress_moves_within_a_step_across_windows(ext: Extension) -> None:
    ext.host.processing.process_images(ext.processing(video_params()))
    log = ext.host.shared.state.progress_log
    assert any(value % 1 > 0 for value in log)


def test_img2img_makes_a_video_from_the_init_image(ext: Extension) -> None:
    before = state_of(ext)
    init = Image.new("RGB", (64, 64), (200, 40, 40))
    p = ext.processing(video_params(), img2img=True, init_images=[init], denoising_strength=0.8)
    ext.host.processing.process_images(p)
    (gif,) = gifs(ext)
    with Image.open(gif) as image:
        assert image.n_frames == FRAMES
    assert_same_state(before, state_of(ext))


def test_n_iter_gives_one_video_per_batch(ext: Extension) -> None:
    ext.host.processing.process_images(ext.processing(video_params(), n_iter=2))
    assert len(gifs(ext)) == 2


def test_an_api_request_with_a_bad_value_is_refused_before_anything_changes(ext: Extension) -> None:
    before = state_of(ext)
    sizes = record_unet_batches(ext.sd_model.model.diffusion_model)
    request = {"model": MODEL_NAME, "enable": True, "video_length": -1}
    with pytest.raises(RequestError) as caught:
        ext.host.processing.process_images(ext.processing(request, is_api=True))
    assert vars(caught.value)["status_code"] == 422 and "video_length" in caught.value.detail
    assert sizes == [] and gifs(ext) == []
    assert_same_state(before, state_of(ext))


@pytest.mark.parametrize("model", ["../outside.safetensors", "missing.safetensors"])
def test_a_motion_module_outside_the_folder_or_missing_is_a_422_naming_model(
    ext: Extension, model: str
) -> None:
    before = state_of(ext)
    with pytest.raises(RequestError) as caught:
        ext.host.processing.process_images(ext.processing({"model": model, "enable": True}, is_api=True))
    assert caught.value.field == "model"
    assert_same_state(before, state_of(ext))


def test_the_api_answers_with_the_video_file_and_the_request_id_in_its_name(ext: Extension) -> None:
    request = {
        "model": MODEL_NAME, "enable": True, "video_length": 4, "batch_size": 4, "format": ["GIF"],
        "request_id": "req7",
    }  # fmt: skip
    res = ext.host.processing.process_images(ext.processing(request, is_api=True))
    (gif,) = gifs(ext)
    assert gif.stem.endswith("-req7")
    assert res.images == [base64.b64encode(gif.read_bytes()).decode()]
    with Image.open(io.BytesIO(base64.b64decode(res.images[0]))) as image:
        assert image.n_frames == 4


def test_prompt_travel_gives_frames_between_keyframes_blended_conditioning(ext: Extension) -> None:
    contexts = []
    ext.sd_model.model.diffusion_model.register_forward_pre_hook(
        lambda module, args, kwargs: contexts.append(kwargs["context"]), with_kwargs=True
    )
    prompt = "masterpiece\n0: a cat\n3: a dog"
    params = video_params(video_length=4, batch_size=4, overlap=0)
    res = ext.host.processing.process_images(ext.processing(params, prompt=prompt))
    keys = ext.sd_model.get_learned_conditioning(["masterpiece, a cat, ", "masterpiece, a dog, "])
    cond = contexts[0][:4]  # cond rows of the first call (Batch cond/uncond on): frames 0..3
    assert torch.equal(cond[0], keys[0]) and torch.equal(cond[3], keys[1])
    for frame in (1, 2):
        assert not torch.allclose(cond[frame], keys[0]) and not torch.allclose(cond[frame], keys[1])
    assert not torch.allclose(cond[1], cond[2])
    assert res.infotexts[0].startswith(prompt + "\nNegative prompt:")


def test_freeinit_samples_every_pass_and_restores_the_unet(ext: Extension) -> None:
    before = state_of(ext)
    sizes = record_unet_batches(ext.sd_model.model.diffusion_model)
    ext.host.processing.process_images(ext.processing(video_params(video_length=4, batch_size=4)))
    plain_calls = len(sizes)
    sizes.clear()
    state = ext.host.shared.state
    state.job_no = 0
    params = video_params(video_length=4, batch_size=4, freeinit_enable=True, freeinit_iters=3)
    ext.host.processing.process_images(ext.processing(params))
    assert len(sizes) == 3 * plain_calls
    assert state.job_no == state.job_count == 3  # the progress bar moves once per FreeInit pass
    assert len(gifs(ext)) == 2
    assert_same_state(before, state_of(ext))


def test_skip_drops_the_skipped_video_and_goes_on_with_the_next(ext: Extension) -> None:
    on_unet_call(ext, 2, ext.host.shared.state.skip)
    p = ext.processing(video_params(), n_iter=2)
    ext.host.processing.process_images(p)
    (gif,) = gifs(ext)
    assert gif.name.endswith(f"-{p.all_seeds[FRAMES]}.gif")  # the second video's first seed


def test_the_motion_module_goes_into_the_model_loaded_after_override_settings(ext: Extension) -> None:
    """A1111 runs before_process, then switches the checkpoint (override_settings), then samples."""
    first = state_of(ext)
    p = ext.processing(video_params())
    p.scripts.before_process(p)
    other = FakeSDModel(tiny_ldm_unet("sd15", seed=1))
    other_before = unet_fingerprint(other.model.diffusion_model)
    p.sd_model = ext.host.shared.sd_model = other
    sizes = record_unet_batches(other.model.diffusion_model)
    ext.host.processing.process_images_inner(p)
    assert sizes and set(sizes) == {2 * CONTEXT}
    assert unet_fingerprint(other.model.diffusion_model) == other_before
    assert len(gifs(ext)) == 1
    assert_same_state(first, state_of(ext))


def test_img2img_last_frame_ends_the_video_on_its_latent(
    ext: Extension, monkeypatch: pytest.MonkeyPatch
) -> None:
    img2img = ext.host.processing.StableDiffusionProcessingImg2Img
    host_sample = img2img.sample
    sampled_from: list[torch.Tensor] = []

    def spy_sample(self, *args, **kwargs):
        sampled_from.append(self.init_latent.clone())
        return host_sample(self, *args, **kwargs)

    monkeypatch.setattr(img2img, "sample", spy_sample)
    init = Image.new("RGB", (64, 64), (200, 40, 40))
    last = Image.new("RGB", (64, 64), (30, 30, 220))
    p = ext.processing(
        video_params(last_frame=last, latent_scale=4),
        img2img=True,
        init_images=[init],
        denoising_strength=0.8,
    )
    ext.host.processing.process_images(p)
    pixels = torch.from_numpy(np.asarray(last, dtype=np.float32) / 127.5 - 1.0).permute(2, 0, 1)[None]
    expected_last = ext.sd_model.encode_first_stage(pixels)[0]
    first_init = ext.sd_model.encode_first_stage(
        torch.from_numpy(np.asarray(init, dtype=np.float32) / 127.5 - 1.0).permute(2, 0, 1)[None]
    )[0]
    assert torch.allclose(sampled_from[0][FRAMES - 1], expected_last, atol=1e-6)
    assert torch.allclose(sampled_from[0][0], first_init, atol=1e-6)
    assert len(gifs(ext)) == 1


@pytest.mark.parametrize(
    ("lowvram", "setting", "offloaded"), [(True, False, True), (False, True, True), (False, False, False)]
)
def test_the_motion_module_leaves_the_gpu_under_lowvram_or_the_setting(
    ext: Extension, monkeypatch: pytest.MonkeyPatch, lowvram: bool, setting: bool, offloaded: bool
) -> None:
    import lib_animatediff.a1111.script_flow as script_flow

    calls: list[bool] = []
    monkeypatch.setattr(script_flow.cache, "offload", lambda: calls.append(True))
    ext.sd_model.lowvram = lowvram
    ext.host.shared.opts.data["animatediff_mm_on_cpu"] = setting
    ext.host.processing.process_images(ext.processing(video_params()))
    assert len(gifs(ext)) == 1
    assert calls == ([True] if offloaded else [])


def test_freenoise_reschedules_the_noise_a1111_samples_from(ext: Extension, monkeypatch) -> None:
    """FreeNoise in A1111: the sampler starts from noise whose every chunk of ``context - overlap``
    frames after the first window is a shuffle of the frames one context earlier."""
    starts: list[torch.Tensor] = []
    sampler_class = ext.host.sd_samplers_kdiffusion.KDiffusionSampler
    sample = sampler_class.sample

    def recording_sample(self, p, x, *args, **kwargs):
        starts.append(x.clone())
        return sample(self, p, x, *args, **kwargs)

    monkeypatch.setattr(sampler_class, "sample", recording_sample)
    frames, context, overlap = 10, 4, 1
    results = {}
    for noise in ("default", "freenoise"):
        params = video_params(video_length=frames, overlap=overlap, noise=noise, format=("GIF", "Frame"))
        res = ext.host.processing.process_images(ext.processing(params, is_api=True))
        results[noise] = np.stack([np.asarray(frame) for frame in res.images[1:]])
    plain, rescheduled = starts
    assert torch.equal(rescheduled[:context], plain[:context])
    chunk = context - overlap
    for start in range(context, frames, chunk):
        sources = rescheduled[start - context : start - context + chunk]
        for frame in rescheduled[start : start + chunk]:
            assert any(torch.equal(frame, source) for source in sources)
    assert not torch.equal(rescheduled, plain)
    assert not np.array_equal(results["default"], results["freenoise"])
