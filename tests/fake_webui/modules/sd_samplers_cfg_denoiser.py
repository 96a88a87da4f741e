"""Mirrors A1111 ``modules/sd_samplers_cfg_denoiser.py``: ``CFGDenoiser.forward``.

The batch the inner model sees is built the way A1111 builds it: cond rows first, then uncond rows;
one call with both when ``opts.batch_cond_uncond`` is on, one call per group of ``batch_size`` rows
when it is off; only the cond rows when the uncond pass is skipped (``s_min_uncond``, NGMS). The
``on_cfg_denoiser`` callback runs before the model and may replace ``text_cond``. Conditionings are
tensors, or SDXL's dicts of tensors (``prompt_parser.DictWithShape``, whose ``.shape`` is read
to compare cond and uncond lengths, then catenated key by key into ``{**cond, "c_concat": ...}``);
A1111 reconstructs them from its prompt schedules first, here they are used as they come.
AND-composition, padding of unequal lengths and edit models are left out.
"""

from __future__ import annotations

import torch

from . import sd_samplers_common, shared
from .script_callbacks import CFGDenoiserParams, cfg_denoiser_callback


def catenate_conds(conds: list) -> torch.Tensor | dict:
    """Rows of several conditionings one after the other (per key for SDXL dicts)."""
    if not isinstance(conds[0], dict):
        return torch.cat(conds)
    return {key: torch.cat([cond[key] for cond in conds]) for key in conds[0]}


def subscript_cond(cond: torch.Tensor | dict, a: int, b: int) -> torch.Tensor | dict:
    """Rows ``a:b`` of a conditioning (per key for SDXL dicts)."""
    return {key: value[a:b] for key, value in cond.items()} if isinstance(cond, dict) else cond[a:b]


class CFGDenoiser(torch.nn.Module):
    """Classifier-free guidance around the inner (k-diffusion) model."""

    def __init__(self, sampler) -> None:
        super().__init__()
        self.sampler = sampler
        self.model_wrap = None
        self.step = 0
        self.total_steps = None
        self.p = None
        self.mask = None
        self.nmask = None
        self.init_latent = None

    @property
    def inner_model(self):
        raise NotImplementedError()

    def forward(self, x, sigma, uncond, cond, cond_scale, s_min_uncond, image_cond):
        state = shared.state
        if state.interrupted or state.skipped:
            raise sd_samplers_common.InterruptedException
        batch_size = x.shape[0]
        x_in = torch.cat([x, x])
        sigma_in = torch.cat([sigma, sigma])
        image_cond_in = torch.cat([image_cond, image_cond])
        params = CFGDenoiserParams(
            x_in, image_cond_in, sigma_in, state.sampling_step, state.sampling_steps, cond, uncond, self
        )
        cfg_denoiser_callback(params)
        x_in, image_cond_in, sigma_in = params.x, params.image_cond, params.sigma
        cond, uncond = params.text_cond, params.text_uncond
        skip_uncond = bool(s_min_uncond > 0 and sigma[0] < s_min_uncond and self.step % 2)
        if cond.shape[1] != uncond.shape[1]:
            raise NotImplementedError("fake host: cond and uncond of different lengths are not padded")
        if skip_uncond:
            x_in, sigma_in, image_cond_in = (
                x_in[:batch_size],
                sigma_in[:batch_size],
                image_cond_in[:batch_size],
            )
            cond_in = cond
        else:
            cond_in = catenate_conds([cond, uncond])

        def condition(c_crossattn, c_concat):
            if isinstance(uncond, dict):
                return {**c_crossattn, "c_concat": [c_concat]}
            return {"c_crossattn": [c_crossattn], "c_concat": [c_concat]}

        if shared.opts.batch_cond_uncond:
            x_out = self.inner_model(x_in, sigma_in, cond=condition(cond_in, image_cond_in))
        else:
            x_out = torch.zeros_like(x_in)
            for a in range(0, x_out.shape[0], batch_size):
                b = a + batch_size
                x_out[a:b] = self.inner_model(
                    x_in[a:b],
                    sigma_in[a:b],
                    cond=condition(subscript_cond(cond_in, a, b), image_cond_in[a:b]),
                )
        if skip_uncond:
            x_out = torch.cat([x_out, x_out])
            cond_scale = 1.0
        denoised_uncond = x_out[batch_size:]
        denoised = denoised_uncond + (x_out[:batch_size] - denoised_uncond) * cond_scale
        if self.mask is not None:
            denoised = self.init_latent * self.mask + self.nmask * denoised
        self.sampler.last_latent = denoised
        self.step += 1
        return denoised
