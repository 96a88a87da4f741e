"""A fake of the model object A1111 keeps in ``shared.sd_model``, around a real tiny ldm UNet.

Mirrors what A1111 1.10.1 uses of ldm's ``LatentDiffusion`` (``ldm/models/diffusion/ddpm.py``) as
loaded by ``modules/sd_models.py``: ``model.diffusion_model`` (the UNet), ``apply_model(x, t, cond)``
with ``cond = {"c_crossattn": [...], "c_concat": [...]}``, ``alphas_cumprod`` (SD's scaled-linear
schedule) and ``alphas_cumprod_original``, ``get_learned_conditioning``, ``decode_first_stage`` /
``encode_first_stage``, and the flags ``is_sd1``/``is_sdxl``/``lowvram``. The text encoder and the
VAE are fixed seeded stand-ins: a prompt maps to a seeded random embedding, and the "VAE" is a fixed
linear map between 4 latent channels and RGB at 1/8 resolution.

With ``sdxl=True`` it is the SDXL model as A1111 wraps sgm's ``DiffusionEngine``
(``modules/sd_models_xl.py``): conditionings are ``prompt_parser.DictWithShape`` dicts of
``crossattn`` (per-token) and ``vector`` (pooled) rows, and ``apply_model`` gets
``{"crossattn", "vector", "c_concat"}``; the tiny UNet reads ``crossattn`` as its context.
"""

from __future__ import annotations

import zlib

import torch
from torch import nn

from tests.fixtures.tiny_models import CONTEXT_DIM, tiny_ldm_unet

TOKENS = 4
VECTOR_WIDTH = 8  # SDXL's pooled "vector" conditioning, scaled down


def scaled_linear_alphas_cumprod(
    steps: int = 1000, start: float = 0.00085, end: float = 0.012
) -> torch.Tensor:
    betas = torch.linspace(start**0.5, end**0.5, steps, dtype=torch.float64) ** 2
    return torch.cumprod(1.0 - betas, dim=0).float()


class FakeSDModel(nn.Module):
    def __init__(self, unet: nn.Module | None = None, *, sdxl: bool = False) -> None:
        super().__init__()
        self.model = nn.Module()
        self.model.diffusion_model = unet if unet is not None else tiny_ldm_unet("sdxl" if sdxl else "sd15")
        self.model.conditioning_key = "crossattn"
        self.register_buffer("alphas_cumprod", scaled_linear_alphas_cumprod())
        self.alphas_cumprod_original = self.alphas_cumprod
        self.parameterization = "eps"
        self.cond_stage_key = "txt"
        self.is_sd1, self.is_sd2, self.is_sdxl = not sdxl, False, sdxl
        self.lowvram = False
        self.sd_model_hash = "fake0000"
        generator = torch.Generator().manual_seed(1234)
        self.to_rgb = torch.randn(3, 4, generator=generator) * 0.5
        self.to_latent = torch.linalg.pinv(self.to_rgb)

    def apply_model(self, x_noisy: torch.Tensor, t: torch.Tensor, cond: dict) -> torch.Tensor:
        context = cond["crossattn"] if self.is_sdxl else torch.cat(cond["c_crossattn"], 1)
        return self.model.diffusion_model(x_noisy, t, context=context)

    def get_learned_conditioning(self, prompts: list[str]) -> torch.Tensor | dict:
        tokens, pooled = [], []
        for prompt in prompts:
            generator = torch.Generator().manual_seed(zlib.crc32(prompt.encode()))
            tokens.append(torch.randn(TOKENS, CONTEXT_DIM, generator=generator))
            pooled.append(torch.randn(VECTOR_WIDTH, generator=generator))
        if not self.is_sdxl:
            return torch.stack(tokens)
        from modules.prompt_parser import DictWithShape

        return DictWithShape(crossattn=torch.stack(tokens), vector=torch.stack(pooled))

    def decode_first_stage(self, z: torch.Tensor) -> torch.Tensor:
        rgb = torch.einsum("ck,bkhw->bchw", self.to_rgb, z)
        return torch.tanh(nn.functional.interpolate(rgb, scale_factor=8, mode="nearest"))

    def encode_first_stage(self, x: torch.Tensor) -> torch.Tensor:
        pooled = nn.functional.avg_pool2d(x, 8)
        return torch.einsum("kc,bchw->bkhw", self.to_latent, pooled)
