"""End to end: tiny ldm UNet + injected tiny motion module + k-diffusion's Euler sampler, 40 frames,
context 16, prompt travel, windowed CFG denoising as A1111's hook does it.

k-diffusion is used as installed: its package ``__init__`` imports training-only dependencies
(torchvision among them), so :func:`load_k_diffusion` registers a bare ``k_diffusion`` package with
the installed path, stubs ``torchvision.transforms.functional`` (imported at the top of
``k_diffusion.utils`` but never called by the sampler), imports ``sampling`` and ``external``, and puts
``sys.modules`` back as it was.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types

import pytest
import torch

from lib_animatediff.context import windows
from lib_animatediff.params import AnimateDiffParams
from lib_animatediff.prompt_travel import interpolate, parse
from lib_animatediff.schedule import training_alphas_cumprod
from lib_animatediff.windows import WindowPlan, plan_calls
from motion_module import inject
from tests.fixtures.tiny_models import CONTEXT_DIM, tiny_ldm_unet, tiny_motion_module

FRAMES, CONTEXT, STEPS = 40, 16, 2


def load_k_diffusion() -> tuple[types.ModuleType, types.ModuleType]:
    """``(k_diffusion.sampling, k_diffusion.external)`` without running the package ``__init__``."""
    spec = importlib.util.find_spec("k_diffusion")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("k-diffusion is not installed")
    names = ["k_diffusion", "k_diffusion.sampling", "k_diffusion.utils", "k_diffusion.external"]
    stubs = ["torchvision", "torchvision.transforms", "torchvision.transforms.functional"]
    saved = {name: sys.modules.get(name) for name in names + stubs}
    try:
        package = types.ModuleType("k_diffusion")
        package.__path__ = list(spec.submodule_search_locations)
        sys.modules["k_diffusion"] = package
        if importlib.util.find_spec("torchvision") is None:
            for name in stubs:
                sys.modules[name] = types.ModuleType(name)
            sys.modules["torchvision.transforms"].functional = sys.modules[
                "torchvision.transforms.functional"
            ]
        return importlib.import_module("k_diffusion.sampling"), importlib.import_module(
            "k_diffusion.external"
        )
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module


class WindowedLatentDiffusion(torch.nn.Module):
    """What k-diffusion's ``CompVisDenoiser`` wraps: ``alphas_cumprod`` and a windowed ``apply_model``.

    ``step`` plays A1111's ``denoiser.step`` (one per model call, rotating the windows).
    """

    def __init__(self, unet, handle, params: AnimateDiffParams, beta_schedule, *, max_frames_per_call=None):
        super().__init__()
        self.unet, self.handle = unet, handle
        self.plan = WindowPlan.from_params(params, max_frames_per_call=max_frames_per_call)
        self.register_buffer("alphas_cumprod", training_alphas_cumprod(beta_schedule, dtype=torch.float32))
        self.step = 0
        self.unet_calls = 0

    def apply_model(self, x, t, cond):
        frame_windows = self.plan.windows(self.step, FRAMES)
        self.step += 1

        def denoise(rows, frames):
            self.unet_calls += 1
            self.handle.set_frames(frames)
            return self.unet(x[rows], t[rows], context=cond[rows])

        return self.plan.denoise(denoise, frame_windows, num_frames=FRAMES, num_groups=x.shape[0] // FRAMES)


def sample(steps=STEPS, max_frames_per_call=None, last_frame_noise_shift=0.0, first_step=0):
    """Euler-sample 40 frames; returns (latents, the model wrapper, initial noise · σ₀)."""
    sampling, external = load_k_diffusion()
    params = AnimateDiffParams(enable=True, video_length=FRAMES, batch_size=CONTEXT)
    unet, mm = tiny_ldm_unet("sd15"), tiny_motion_module("v3")
    params.validate(pe_length=mm.pe_length)
    before = {k: v.clone() for k, v in unet.state_dict().items()}
    generator = torch.Generator().manual_seed(0)
    keyframe_conds = torch.randn(FRAMES, 5, CONTEXT_DIM, generator=generator)
    schedule = parse("best quality\n0: a cat\n20: a dog\n30: a bird", FRAMES)
    cond = interpolate(keyframe_conds, schedule, closed=params.prompt_wraps)
    uncond = torch.randn(1, 5, CONTEXT_DIM, generator=generator).expand(FRAMES, -1, -1)
    noise = torch.randn(FRAMES, 4, 8, 8, generator=generator)
    noise[-1] += last_frame_noise_shift
    with torch.no_grad(), inject(unet, mm) as handle:
        model = WindowedLatentDiffusion(
            unet, handle, params, mm.beta_schedule, max_frames_per_call=max_frames_per_call
        )
        model.step = first_step
        denoiser = external.CompVisDenoiser(model)

        def guided(x, sigma, cond, uncond, scale=7.0):  # A1111's CFG denoiser, batch cond/uncond on
            out = denoiser(torch.cat([x, x]), torch.cat([sigma, sigma]), cond=torch.cat([cond, uncond]))
            eps_cond, eps_uncond = out.chunk(2)
            return eps_uncond + (eps_cond - eps_uncond) * scale

        sigmas = denoiser.get_sigmas(steps)
        latents = sampling.sample_euler(
            guided, noise * sigmas[0], sigmas, extra_args={"cond": cond, "uncond": uncond}, disable=True
        )
    restored = unet.state_dict()
    assert restored.keys() == before.keys() and all(torch.equal(restored[k], before[k]) for k in before)
    return latents, model, noise * sigmas[0]


@pytest.mark.slow
def test_forty_frames_with_context_sixteen_end_to_end():
    latents, model, start = sample()
    assert latents.shape == (FRAMES, 4, 8, 8) and torch.isfinite(latents).all()
    expected_calls = sum(len(plan_calls(windows(s, FRAMES, CONTEXT, 1, 4, "R-P"))) for s in range(STEPS))
    assert model.step == STEPS and model.unet_calls == expected_calls
    # A frame that no window reached would keep its starting latent (zero noise prediction).
    assert all(not torch.equal(latents[f], start[f]) for f in range(FRAMES))


@pytest.mark.slow
def test_packed_windows_and_wrapping_context_in_one_step():
    # Denoiser step 1 has the windows [20..35], [32..39, 0..7], [4..19].
    one_step, one_model, _ = sample(steps=1, first_step=1)
    packed, packed_model, _ = sample(steps=1, first_step=1, max_frames_per_call=48)
    assert (one_model.unet_calls, packed_model.unet_calls) == (3, 1)
    torch.testing.assert_close(packed, one_step, rtol=1e-5, atol=1e-5)
    # The wrapping window (R-P) lets the motion module carry a change of frame 39's noise into frame 0.
    shifted, _, _ = sample(steps=1, first_step=1, last_frame_noise_shift=1.0)
    assert not torch.allclose(shifted[0], one_step[0], atol=1e-6)
