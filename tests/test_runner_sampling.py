"""The runner's windowed, guided sampling loop on denoisers whose answer is known."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from diffusers import DDIMScheduler

from lib_animatediff.options import RUNNER_SAMPLERS
from lib_animatediff.runner.samplers import SAMPLERS, make_scheduler
from lib_animatediff.runner.sampling import (
    FrameConditioning,
    WindowedGuidedDenoiser,
    run_scheduler,
)
from lib_animatediff.windows import WindowPlan
from motion_module.variants import LINEAR_BETAS, SDXL_BETAS, BetaSchedule

FRAMES, CHANNELS, SIZE, TOKENS, WIDTH = 24, 4, 4, 3, 5


class FrameLocalUNet(torch.nn.Module):
    """A fake UNet whose output row depends only on that row's latent, timestep and conditioning."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[int] = []

    def forward(self, x, timestep, *, encoder_hidden_states, added_cond_kwargs=None):
        self.calls.append(x.shape[0])
        shift = encoder_hidden_states.mean(dim=(1, 2))[:, None, None, None]
        return SimpleNamespace(sample=torch.tanh(x) * 0.5 + shift + float(timestep) / 1000)


class GroupMeanUNet(FrameLocalUNet):
    """Mixes frames: each row minus the mean of its group of ``frames`` rows (like temporal attention)."""

    def __init__(self) -> None:
        super().__init__()
        self.frames = 0

    def forward(self, x, timestep, *, encoder_hidden_states, added_cond_kwargs=None):
        local = super().forward(x, timestep, encoder_hidden_states=encoder_hidden_states).sample
        grouped = local.view(-1, self.frames, *local.shape[1:])
        return SimpleNamespace(sample=(grouped - 0.3 * grouped.mean(dim=1, keepdim=True)).flatten(0, 1))


def conditioning(seed: int) -> FrameConditioning:
    generator = torch.Generator().manual_seed(seed)
    return FrameConditioning(
        hidden=torch.randn(FRAMES, TOKENS, WIDTH, generator=generator, dtype=torch.float64)
    )


def latents(seed: int = 0) -> torch.Tensor:
    return torch.randn(
        FRAMES, CHANNELS, SIZE, SIZE, generator=torch.Generator().manual_seed(seed), dtype=torch.float64
    )


def denoiser(unet, settings: WindowPlan, cfg: float = 7.0) -> WindowedGuidedDenoiser:
    set_frames = (
        (lambda n: setattr(unet, "frames", n)) if isinstance(unet, GroupMeanUNet) else (lambda n: None)
    )
    alphas = DDIMScheduler().alphas_cumprod
    return WindowedGuidedDenoiser(unet, set_frames, conditioning(1), conditioning(2), cfg, settings, alphas)


@pytest.mark.parametrize("fuse_method", ["pyramid", "flat", "overwrite", "gauss"])
@pytest.mark.parametrize("windows_per_call", [1, 3])
def test_frame_local_denoiser_gives_the_unwindowed_guided_result(
    fuse_method: str, windows_per_call: int
) -> None:
    x, t = latents(), torch.tensor(500)
    settings = WindowPlan(
        size=8, overlap=3, fuse_method=fuse_method, max_frames_per_call=8 * windows_per_call
    )
    actual = denoiser(FrameLocalUNet(), settings)(x, t, step=3)
    reference_unet = FrameLocalUNet()
    eps_cond = reference_unet(x, t, encoder_hidden_states=conditioning(1).hidden).sample
    eps_uncond = reference_unet(x, t, encoder_hidden_states=conditioning(2).hidden).sample
    torch.testing.assert_close(actual, eps_uncond + 7.0 * (eps_cond - eps_uncond), rtol=1e-12, atol=1e-12)


def test_windowed_equals_unwindowed_when_the_context_holds_every_frame() -> None:
    x, t = latents(), torch.tensor(250)
    unet = GroupMeanUNet()
    actual = denoiser(unet, WindowPlan(size=FRAMES))(x, t, step=0)
    assert unet.calls == [2 * FRAMES]
    unet.frames = FRAMES
    both = unet(
        torch.cat([x, x]),
        t,
        encoder_hidden_states=torch.cat([conditioning(1).hidden, conditioning(2).hidden]),
    )
    eps_cond, eps_uncond = both.sample.chunk(2)
    torch.testing.assert_close(actual, eps_uncond + 7.0 * (eps_cond - eps_uncond), rtol=1e-12, atol=1e-12)


def test_smaller_windows_change_a_frame_mixing_result() -> None:
    x, t = latents(), torch.tensor(250)
    whole = denoiser(GroupMeanUNet(), WindowPlan(size=FRAMES))(x, t, step=0)
    windowed = denoiser(GroupMeanUNet(), WindowPlan(size=8, overlap=2))(x, t, step=0)
    assert (whole - windowed).abs().max() > 1e-3


def test_unet_calls_and_frame_evaluations_follow_the_windows() -> None:
    # N=24, L=8, overlap 2 at step 0: windows start at 0, 6, 12, 18 -> 4 windows (the last wraps).
    unet = FrameLocalUNet()
    one = denoiser(unet, WindowPlan(size=8, overlap=2))
    one(latents(), torch.tensor(10), step=0)
    assert unet.calls == [16, 16, 16, 16]
    assert one.frame_evaluations == 64
    batched_unet = FrameLocalUNet()
    denoiser(batched_unet, WindowPlan(size=8, overlap=2, max_frames_per_call=16))(
        latents(), torch.tensor(10), step=0
    )
    assert batched_unet.calls == [32, 32]


def test_cfg_one_skips_the_unconditional_half() -> None:
    unet = FrameLocalUNet()
    x, t = latents(), torch.tensor(100)
    actual = denoiser(unet, WindowPlan(size=FRAMES), cfg=1.0)(x, t, step=0)
    assert unet.calls == [FRAMES]
    torch.testing.assert_close(
        actual, FrameLocalUNet()(x, t, encoder_hidden_states=conditioning(1).hidden).sample
    )


def test_ddim_loop_with_an_oracle_denoiser_follows_the_closed_form_path() -> None:
    """(float32 scheduler arithmetic.) With the exact eps of ``x_t = sqrt(a_t) x0 + sqrt(1 - a_t) e``, deterministic DDIM keeps ``e``
    fixed, so after the last step ``x = sqrt(a_0) x0 + sqrt(1 - a_0) e`` (``a_0``: its final alpha)."""
    target = latents(7)
    scheduler = make_scheduler("DDIM")
    abar = scheduler.alphas_cumprod.to(torch.float64)

    class Oracle(torch.nn.Module):
        def forward(self, x, timestep, *, encoder_hidden_states, added_cond_kwargs=None):
            a = abar[int(timestep)]
            clean = target.repeat(x.shape[0] // FRAMES, 1, 1, 1)
            return SimpleNamespace(sample=(x - a.sqrt() * clean) / (1 - a).sqrt())

    start = latents(8)
    result = run_scheduler(
        scheduler, denoiser(Oracle(), WindowPlan(size=FRAMES), cfg=3.0), start, 10, progress=False
    )
    assert scheduler.timesteps[0] == 999
    noise = (start - abar[999].sqrt() * target) / (1 - abar[999]).sqrt()
    final = abar[0]
    torch.testing.assert_close(
        result, final.sqrt() * target + (1 - final).sqrt() * noise, rtol=1e-6, atol=1e-6
    )


@pytest.mark.parametrize("sampler", list(SAMPLERS))
@pytest.mark.parametrize("schedule", [LINEAR_BETAS, SDXL_BETAS])
def test_every_sampler_uses_the_motion_module_training_schedule(sampler: str, schedule: BetaSchedule) -> None:
    """Reference: diffusers' own beta schedules of the same name and range, in float64 by hand."""
    if schedule.kind == "linear":
        betas = torch.linspace(schedule.beta_start, schedule.beta_end, 1000, dtype=torch.float64)
    else:
        betas = (
            torch.linspace(schedule.beta_start**0.5, schedule.beta_end**0.5, 1000, dtype=torch.float64) ** 2
        )
    scheduler = make_scheduler(sampler, schedule)
    torch.testing.assert_close(
        scheduler.alphas_cumprod.double(), torch.cumprod(1 - betas, 0), rtol=1e-6, atol=1e-7
    )


def test_command_line_offers_exactly_the_samplers_we_configure() -> None:
    assert tuple(SAMPLERS) == RUNNER_SAMPLERS


def test_unknown_sampler_is_rejected_by_name() -> None:
    with pytest.raises(ValueError, match="sampler='Heun'"):
        make_scheduler("Heun")
