"""A single-file SDXL checkpoint in the original (sgm / A1111) key layout loads into matching models.

The reference modules do not go through diffusers' converters: the ldm ``UNetModel`` with SDXL's
vector conditioning (``label_emb``) attached, the ldm VAE ``Encoder`` / ``Decoder``, a transformers
``CLIPTextModel`` for CLIP-L (sgm stores its keys unchanged) and an OpenCLIP-style text tower written
here, whose parameter names are OpenCLIP's. Their weights are saved under sgm's prefixes, together
with the extra entries real checkpoints carry (CLIP-L ``position_ids``, OpenCLIP ``logit_scale``).
The tiny configs keep every non-size setting of the shipped SDXL configs, so activation, pooling and
embedding choices are checked too. The loaded pipeline must compute what the references compute.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import pytest
import torch
from ldm.modules.diffusionmodules.model import Decoder, Encoder
from ldm.modules.diffusionmodules.util import timestep_embedding
from safetensors.torch import save_file
from torch import nn
from transformers import CLIPTextConfig, CLIPTextModel

from lib_animatediff.runner.configs import SDXL
from lib_animatediff.runner.models import load_single_file
from lib_animatediff.runner.text import encode_prompts
from lib_animatediff.runner.tiny import char_clip_tokenizer
from tests.fixtures.tiny_models import CONTEXT_DIM, diffusers_config, randomize_, tiny_ldm_unet, unet_inputs
from tests.test_runner_models import VAE_ARGS, VAE_CHANNELS

VOCAB = len(char_clip_tokenizer())
CLIP_L_WIDTH = 8
BIG_G_WIDTH = CONTEXT_DIM - CLIP_L_WIDTH
POOLED_DIM = 12
TIME_ID_DIM = 8
VECTOR_DIM = POOLED_DIM + 6 * TIME_ID_DIM
BIG_G_LAYERS = 2
BIG_G_HEADS = 2
UNET_SIZE_KEYS = ("block_out_channels", "attention_head_dim", "cross_attention_dim", "sample_size")
CLIP_L = SDXL["text_encoders"][0] | {"vocab_size": VOCAB, "hidden_size": CLIP_L_WIDTH}
CLIP_L |= {
    "intermediate_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "bos_token_id": VOCAB - 2,
}


def tiny_sdxl_configs() -> dict:
    """The shipped SDXL configs with only the sizes scaled down to the reference modules'."""
    sizes = {k: v for k, v in diffusers_config("sdxl").items() if k in UNET_SIZE_KEYS}
    unet = SDXL["unet"] | sizes | {"transformer_layers_per_block": 1}
    unet |= {"addition_time_embed_dim": TIME_ID_DIM, "projection_class_embeddings_input_dim": VECTOR_DIM}
    vae = SDXL["vae"] | {"block_out_channels": [VAE_CHANNELS] * 2, "layers_per_block": 1, "sample_size": 16}
    vae |= {"down_block_types": ["DownEncoderBlock2D"] * 2, "up_block_types": ["UpDecoderBlock2D"] * 2}
    big_g = SDXL["text_encoders"][1] | {"vocab_size": VOCAB, "hidden_size": BIG_G_WIDTH}
    big_g |= {"intermediate_size": 4 * BIG_G_WIDTH, "num_hidden_layers": BIG_G_LAYERS}
    big_g |= {"num_attention_heads": BIG_G_HEADS, "projection_dim": POOLED_DIM, "bos_token_id": VOCAB - 2}
    return {"sdxl": {"unet": unet, "vae": vae, "text_encoders": [CLIP_L, big_g]}}


class OpenClipBlock(nn.Module):
    """One pre-norm OpenCLIP residual block: fused-QKV attention, then a GELU MLP."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(width)
        self.attn = nn.MultiheadAttention(width, heads, batch_first=True)
        self.ln_2 = nn.LayerNorm(width)
        mlp = OrderedDict(
            c_fc=nn.Linear(width, 4 * width), gelu=nn.GELU(), c_proj=nn.Linear(4 * width, width)
        )
        self.mlp = nn.Sequential(mlp)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        normed = self.ln_1(x)
        x = x + self.attn(normed, normed, normed, attn_mask=mask, need_weights=False)[0]
        return x + self.mlp(self.ln_2(x))


class OpenClipText(nn.Module):
    """OpenCLIP's text tower under its own parameter names (``transformer.resblocks.N...``)."""

    def __init__(self, tokens: int = 77) -> None:
        super().__init__()
        self.token_embedding = nn.Embedding(VOCAB, BIG_G_WIDTH)
        self.positional_embedding = nn.Parameter(torch.randn(tokens, BIG_G_WIDTH))
        blocks = nn.ModuleList(OpenClipBlock(BIG_G_WIDTH, BIG_G_HEADS) for _ in range(BIG_G_LAYERS))
        self.transformer = nn.ModuleDict({"resblocks": blocks})
        self.ln_final = nn.LayerNorm(BIG_G_WIDTH)
        self.text_projection = nn.Parameter(torch.randn(BIG_G_WIDTH, POOLED_DIM) / BIG_G_WIDTH**0.5)
        self.logit_scale = nn.Parameter(torch.tensor(4.6))

    def forward(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(penultimate block output, projected final-norm state at the highest token id)``."""
        mask = torch.full((ids.shape[1], ids.shape[1]), float("-inf")).triu(1)
        x = self.token_embedding(ids) + self.positional_embedding[: ids.shape[1]]
        *inner, last = self.transformer["resblocks"]
        for block in inner:
            x = block(x, mask)
        penultimate = x
        final = self.ln_final(last(x, mask))
        return penultimate, final[torch.arange(len(ids)), ids.argmax(dim=-1)] @ self.text_projection


def sgm_unet(seed: int) -> nn.Module:
    """The ldm UNet with SDXL's ``label_emb`` (vector of pooled text + size embeddings) attached.

    This ldm version predates sgm's ``"sequential"`` label embedding; its forward adds
    ``label_emb(y)`` to the time embedding exactly as sgm's UNet does.
    """
    unet = tiny_ldm_unet("sdxl", seed=seed)
    width = unet.time_embed[0].out_features
    unet.num_classes = "sequential"
    layers = nn.Sequential(nn.Linear(VECTOR_DIM, width), nn.SiLU(), nn.Linear(width, width))
    unet.label_emb = randomize_(nn.Sequential(layers), seed + 1).eval()
    return unet


@pytest.fixture(scope="module")
def sgm_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict]:
    """A single-file SDXL checkpoint from seeded reference modules, the tokenizer folder, the modules."""
    torch.manual_seed(0)
    modules = {
        "unet": sgm_unet(seed=1),
        "encoder": Encoder(**VAE_ARGS).eval(),
        "decoder": Decoder(**VAE_ARGS).eval(),
        "quant_conv": nn.Conv2d(8, 8, 1),
        "post_quant_conv": nn.Conv2d(4, 4, 1),
        "clip_l": CLIPTextModel(CLIPTextConfig(**CLIP_L)).eval(),
        "big_g": randomize_(OpenClipText(), seed=3).eval(),
    }
    state = {f"model.diffusion_model.{k}": v for k, v in modules["unet"].state_dict().items()}
    for part in ("encoder", "decoder", "quant_conv", "post_quant_conv"):
        state |= {f"first_stage_model.{part}.{k}": v for k, v in modules[part].state_dict().items()}
    clip_l_prefix = "conditioner.embedders.0.transformer.text_model."
    clip_l = modules["clip_l"].state_dict().items()
    state |= {clip_l_prefix + k.removeprefix("text_model."): v for k, v in clip_l}
    state[clip_l_prefix + "embeddings.position_ids"] = torch.arange(77)[None]
    state |= {f"conditioner.embedders.1.model.{k}": v for k, v in modules["big_g"].state_dict().items()}
    root = tmp_path_factory.mktemp("single_sdxl")
    path = root / "tiny_sdxl.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    char_clip_tokenizer().save_pretrained(root / "tokenizer")
    return path, root / "tokenizer", modules


@pytest.fixture(scope="module")
def loaded(sgm_checkpoint):
    path, tokenizer_dir, _ = sgm_checkpoint
    return load_single_file(path, tokenizer_dir=tokenizer_dir, configs=tiny_sdxl_configs())


def test_sdxl_unet_with_pooled_and_size_conditioning_matches_the_sgm_unet(sgm_checkpoint, loaded) -> None:
    ldm = sgm_checkpoint[2]
    assert loaded.family == "sdxl"
    latents, timesteps, context = unet_inputs(2)
    pooled = torch.randn(2, POOLED_DIM, generator=torch.Generator().manual_seed(4))
    time_ids = torch.tensor([[1024.0, 1024, 0, 0, 1024, 1024], [768, 1344, 16, 32, 832, 1216]])
    sizes = timestep_embedding(time_ids.flatten(), TIME_ID_DIM).reshape(2, -1)
    with torch.no_grad():
        expected = ldm["unet"](latents, timesteps, context=context, y=torch.cat([pooled, sizes], dim=1))
        added = {"text_embeds": pooled, "time_ids": time_ids}
        actual = loaded.unet(latents, timesteps, encoder_hidden_states=context, added_cond_kwargs=added)
    torch.testing.assert_close(actual.sample, expected, rtol=1e-4, atol=1e-5)


def test_sdxl_vae_encodes_and_decodes_like_the_ldm_autoencoder(sgm_checkpoint, loaded) -> None:
    ldm = sgm_checkpoint[2]
    generator = torch.Generator().manual_seed(5)
    image = torch.rand(1, 3, 16, 16, generator=generator) * 2 - 1
    z = torch.randn(1, 4, 8, 8, generator=generator)
    with torch.no_grad():
        moments = ldm["quant_conv"](ldm["encoder"](image))
        torch.testing.assert_close(loaded.vae.encode(image).latent_dist.mean, moments[:, :4])
        expected_image = ldm["decoder"](ldm["post_quant_conv"](z))
        torch.testing.assert_close(loaded.vae.decode(z).sample, expected_image, rtol=1e-4, atol=1e-5)


def test_sdxl_prompt_encoding_matches_clip_l_and_the_openclip_tower(sgm_checkpoint, loaded) -> None:
    ldm = sgm_checkpoint[2]
    prompts = ["a red fox", "snow"]
    hidden, pooled = encode_prompts(loaded, prompts)
    tokenize = {"padding": "max_length", "max_length": 77, "return_tensors": "pt"}
    ids_l = loaded.tokenizers[0](prompts, **tokenize).input_ids
    ids_g = loaded.tokenizers[1](prompts, **tokenize).input_ids
    with torch.no_grad():
        clip_l = ldm["clip_l"](ids_l, output_hidden_states=True).hidden_states[-2]
        big_g, expected_pooled = ldm["big_g"](ids_g)
    torch.testing.assert_close(hidden, torch.cat([clip_l, big_g], dim=-1), rtol=1e-4, atol=1e-5)
    assert pooled is not None
    torch.testing.assert_close(pooled, expected_pooled, rtol=1e-4, atol=1e-5)
