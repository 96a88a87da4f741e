"""Mirrors A1111 ``modules/sd_samplers_kdiffusion.py`` (and the parts of ``sd_samplers_common.Sampler``
it uses): the real k-diffusion Euler sampler driving the CFG denoiser.

As in A1111 the k-diffusion wrapper around ``shared.sd_model`` (``CompVisDenoiser``, which reads
``sd_model.alphas_cumprod``) is built when the sampler is created, an interrupt returns the last
latent instead of raising, and the per-step callback moves ``shared.state.sampling_step``.
"""

from __future__ import annotations

import k_diffusion.external
import k_diffusion.sampling

from . import sd_samplers_cfg_denoiser, sd_samplers_common, shared


class CFGDenoiserKDiffusion(sd_samplers_cfg_denoiser.CFGDenoiser):
    @property
    def inner_model(self):
        if self.model_wrap is None:
            self.model_wrap = k_diffusion.external.CompVisDenoiser(shared.sd_model)
        return self.model_wrap


class KDiffusionSampler:
    def __init__(self, funcname: str, sd_model) -> None:
        self.funcname = funcname
        self.func = getattr(k_diffusion.sampling, funcname)
        self.model_wrap_cfg = CFGDenoiserKDiffusion(self)
        self.model_wrap = self.model_wrap_cfg.inner_model
        self.last_latent = None
        self.sampler_extra_args: dict = {}

    def callback_state(self, d: dict) -> None:
        shared.state.sampling_step = d["i"]

    def launch_sampling(self, steps: int, func):
        shared.state.sampling_steps = steps
        shared.state.sampling_step = 0
        try:
            return func()
        except sd_samplers_common.InterruptedException:
            return self.last_latent

    def initialize(self, p) -> None:
        self.model_wrap_cfg.p = p
        self.model_wrap_cfg.step = 0
        self.model_wrap_cfg.mask = getattr(p, "mask", None)
        self.model_wrap_cfg.nmask = getattr(p, "nmask", None)

    def get_sigmas(self, p, steps: int):
        return self.model_wrap.get_sigmas(steps)

    def _run(self, p, x, sigmas, conditioning, unconditional_conditioning, image_conditioning, steps):
        self.initialize(p)
        self.last_latent = x  # what an interrupt before the first step returns
        self.sampler_extra_args = {
            "cond": conditioning,
            "image_cond": image_conditioning,
            "uncond": unconditional_conditioning,
            "cond_scale": p.cfg_scale,
            "s_min_uncond": p.s_min_uncond,
        }
        return self.launch_sampling(
            steps,
            lambda: self.func(
                self.model_wrap_cfg,
                x,
                sigmas,
                extra_args=self.sampler_extra_args,
                disable=True,
                callback=self.callback_state,
            ),
        )

    def sample(self, p, x, conditioning, unconditional_conditioning, steps=None, image_conditioning=None):
        steps = steps or p.steps
        sigmas = self.get_sigmas(p, steps)
        return self._run(
            p, x * sigmas[0], sigmas, conditioning, unconditional_conditioning, image_conditioning, steps
        )

    def sample_img2img(
        self, p, x, noise, conditioning, unconditional_conditioning, steps=None, image_conditioning=None
    ):
        steps = steps or p.steps
        t_enc = int(min(p.denoising_strength, 0.999) * steps)
        sigmas = self.get_sigmas(p, steps)[steps - t_enc - 1 :]
        self.model_wrap_cfg.init_latent = x
        return self._run(
            p,
            x + noise * sigmas[0],
            sigmas,
            conditioning,
            unconditional_conditioning,
            image_conditioning,
            t_enc + 1,
        )
