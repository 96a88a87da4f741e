"""Hires fix with AnimateDiff in the fake A1111 1.10 host: the second pass (``sample_hr_pass``) runs
inside our ``p.sample`` replacement, so it must be windowed, with the motion module in, and undone."""

from __future__ import annotations

import pytest
import torch

from motion_module.journal import Journal
from tests.fake_webui.harness import MODEL_NAME, Extension, load_extension, unet_fingerprint
from tests.test_a1111_flow import CONTEXT, video_params

pytestmark = pytest.mark.fakehost

BASE = 64  # 8x8 latents
HIRES = 16  # latent side after hr_scale 2


@pytest.fixture
def ext(monkeypatch: pytest.MonkeyPatch, tmp_path) -> Extension:
    return load_extension(monkeypatch, tmp_path)


def hires(**changes) -> dict:
    options = dict(
        enable_hr=True, hr_scale=2.0, hr_upscaler="Latent", denoising_strength=0.6, width=BASE, height=BASE
    )
    options.update(changes)
    return options


def is_motion_module(module: torch.nn.Module) -> bool:
    return type(module).__module__.startswith("motion_module")


def record_calls(ext: Extension, action=None) -> list[dict]:
    """Every UNet call: rows, latent side, whether a motion module is in the UNet, the context."""
    unet = ext.sd_model.model.diffusion_model
    calls: list[dict] = []

    def record(module, args, kwargs):
        x = args[0]
        calls.append(
            {
                "rows": x.shape[0],
                "side": x.shape[-1],
                "motion": any(is_motion_module(m) for m in module.modules()),
                "context": kwargs["context"],
            }
        )
        if action is not None:
            action(calls[-1])

    unet.register_forward_pre_hook(record, with_kwargs=True)
    return calls


def state_of(ext: Extension) -> tuple:
    model = ext.sd_model
    return (
        unet_fingerprint(model.model.diffusion_model),
        model.alphas_cumprod.clone(),
        "apply_model" in vars(model),
    )


def assert_restored(before: tuple, ext: Extension) -> None:
    after = state_of(ext)
    assert before[0] == after[0] and torch.equal(before[1], after[1]) and after[2] is False


def test_the_hires_pass_is_windowed_with_the_motion_module_and_the_unet_is_restored(ext: Extension) -> None:
    before = state_of(ext)
    calls = record_calls(ext)
    p = ext.processing(video_params(), steps=2, hr_second_pass_steps=2, **hires())
    res = ext.host.processing.process_images(p)
    sides = {call["side"] for call in calls}
    assert sides == {BASE // 8, HIRES}
    hr_calls = [call for call in calls if call["side"] == HIRES]
    assert hr_calls and all(call["motion"] for call in calls)
    # cond + uncond rows of one context window per call, in the hires pass too
    assert {call["rows"] for call in hr_calls} == {2 * CONTEXT}
    assert len(res.images) == 1 and res.images[0].endswith(".gif")
    assert_restored(before, ext)


def test_the_first_pass_is_unchanged_by_hires_and_feeds_the_second(
    ext: Extension, monkeypatch: pytest.MonkeyPatch
) -> None:
    processing = ext.host.processing
    seen: dict[str, torch.Tensor] = {}
    host_hr_pass = processing.StableDiffusionProcessingTxt2Img.sample_hr_pass
    host_decode = processing.decode

    def spy_hr_pass(self, samples, *args, **kwargs):
        seen["hr_input"] = samples.clone()
        return host_hr_pass(self, samples, *args, **kwargs)

    def spy_decode(sd_model, samples):
        seen.setdefault("plain", samples.clone())
        return host_decode(sd_model, samples)

    monkeypatch.setattr(processing.StableDiffusionProcessingTxt2Img, "sample_hr_pass", spy_hr_pass)
    monkeypatch.setattr(processing, "decode", spy_decode)
    processing.process_images(ext.processing(video_params(), width=BASE, height=BASE))
    hr = processing.process_images(ext.processing(video_params(), **hires()))
    assert torch.equal(seen["hr_input"], seen["plain"])
    assert hr.images[0].endswith(".gif")


def test_one_window_hires_video_equals_both_passes_run_with_the_module_injected_by_hand(
    ext: Extension, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With one context window the hook must not change the maths: the reference is A1111's plain
    hires txt2img of 4 images with the motion module injected and the training schedule swapped
    in directly (no AnimateDiff script); without the module the result differs."""
    from lib_animatediff.a1111.schedule_swap import swap_training_schedule
    from motion_module import inject

    processing = ext.host.processing
    decoded: list[torch.Tensor] = []
    host_decode = processing.decode

    def spy_decode(sd_model, samples):
        decoded.append(samples.clone())
        return host_decode(sd_model, samples)

    monkeypatch.setattr(processing, "decode", spy_decode)
    params = video_params(video_length=4, batch_size=4, overlap=0)
    processing.process_images(ext.processing(params, **hires()))
    animated = decoded[-1]
    mm = ext.script_module.model_cache.cache.get(MODEL_NAME, device=torch.device("cpu"), dtype=torch.float32)
    model = ext.sd_model
    with inject(model.model.diffusion_model, mm) as handle, Journal() as journal:
        swap_training_schedule(journal, model, mm.beta_schedule)
        handle.set_frames(4)
        processing.process_images(ext.processing(None, batch_size=4, **hires()))
    reference = decoded[-1]
    with Journal() as journal:
        swap_training_schedule(journal, model, mm.beta_schedule)
        processing.process_images(ext.processing(None, batch_size=4, **hires()))
    still = decoded[-1]
    assert animated.shape == (4, 4, HIRES, HIRES)
    torch.testing.assert_close(animated, reference, rtol=1e-4, atol=1e-4)
    assert (animated - still).abs().max() > 1e-2


def test_an_interrupt_during_the_hires_pass_restores_the_unet(ext: Extension) -> None:
    before = state_of(ext)
    state = ext.host.shared.state

    def interrupt_in_hires(call: dict) -> None:
        if call["side"] == HIRES:
            state.interrupt()

    calls = record_calls(ext, interrupt_in_hires)
    ext.host.processing.process_images(ext.processing(video_params(), **hires()))
    assert sum(call["side"] == HIRES for call in calls) == 1  # no window after the flag
    assert_restored(before, ext)
    assert not list((ext.host.root / "outputs" / "AnimateDiff").rglob("*.gif"))


def test_prompt_travel_applies_to_the_hires_conditioning(ext: Extension) -> None:
    calls = record_calls(ext)
    prompt = "masterpiece\n0: a cat\n3: a dog"
    params = video_params(video_length=4, batch_size=4, overlap=0)
    ext.host.processing.process_images(ext.processing(params, prompt=prompt, **hires()))
    keys = ext.sd_model.get_learned_conditioning(["masterpiece, a cat, ", "masterpiece, a dog, "])
    first = next(call for call in calls if call["side"] == BASE // 8)["context"][:4]
    second = next(call for call in calls if call["side"] == HIRES)["context"][:4]
    assert torch.equal(second, first)
    assert torch.equal(second[0], keys[0]) and torch.equal(second[3], keys[1])
    assert not torch.allclose(second[1], keys[0]) and not torch.allclose(second[1], keys[1])


def test_freeinit_runs_the_hires_pass_in_its_last_iteration_only(ext: Extension) -> None:
    params = video_params(video_length=4, batch_size=4)
    calls = record_calls(ext)
    ext.host.processing.process_images(ext.processing(params, **hires()))
    plain = {side: sum(call["side"] == side for call in calls) for side in (BASE // 8, HIRES)}
    calls.clear()
    p = ext.processing(
        video_params(video_length=4, batch_size=4, freeinit_enable=True, freeinit_iters=3), **hires()
    )
    ext.host.processing.process_images(p)
    assert sum(call["side"] == BASE // 8 for call in calls) == 3 * plain[BASE // 8]
    assert sum(call["side"] == HIRES for call in calls) == plain[HIRES]
    assert calls[-1]["side"] == HIRES and p.enable_hr is True
