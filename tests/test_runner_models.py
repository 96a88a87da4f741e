"""Offline model loading: a single-file SD1.5 checkpoint in the original (ldm) layout, and bad paths.

The reference is the ldm classes themselves: a tiny checkpoint is written from ldm ``UNetModel`` /
``Encoder`` / ``Decoder`` modules and a CLIP text model, loaded with our loader (diffusers' key
converters + our configs), and the loaded diffusers models must compute what the ldm modules compute.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from ldm.modules.diffusionmodules.model import Decoder, Encoder
from safetensors.torch import save_file
from transformers import CLIPTextConfig, CLIPTextModel

from lib_animatediff.runner.errors import InputError
from lib_animatediff.runner.models import load_pipeline, load_single_file
from lib_animatediff.runner.tiny import char_clip_tokenizer
from tests.fixtures.tiny_models import CONTEXT_DIM, diffusers_config, tiny_ldm_unet, unet_inputs

VAE_CHANNELS = 32
VAE_ARGS = {"ch": VAE_CHANNELS, "out_ch": 3, "ch_mult": (1, 1), "num_res_blocks": 1, "attn_resolutions": []}
VAE_ARGS |= {"in_channels": 3, "resolution": 16, "z_channels": 4}
TEXT = {"vocab_size": 514, "hidden_size": CONTEXT_DIM, "intermediate_size": 32, "num_hidden_layers": 1}
TEXT |= {"num_attention_heads": 2, "max_position_embeddings": 77, "bos_token_id": 512, "eos_token_id": 2}


def tiny_configs() -> dict:
    vae = {
        "block_out_channels": [VAE_CHANNELS, VAE_CHANNELS],
        "down_block_types": ["DownEncoderBlock2D"] * 2,
        "up_block_types": ["UpDecoderBlock2D"] * 2,
        "layers_per_block": 1,
        "latent_channels": 4,
        "norm_num_groups": 32,
        "scaling_factor": 0.18215,
    }
    return {"sd15": {"unet": diffusers_config("sd15"), "vae": vae, "text_encoders": [TEXT]}}


@pytest.fixture(scope="module")
def ldm_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict]:
    """A single-file checkpoint from seeded ldm modules, the tokenizer folder, and the modules."""
    torch.manual_seed(0)
    modules = {
        "unet": tiny_ldm_unet("sd15", seed=1),
        "encoder": Encoder(**VAE_ARGS).eval(),
        "decoder": Decoder(**VAE_ARGS).eval(),
        "quant_conv": torch.nn.Conv2d(8, 8, 1),
        "post_quant_conv": torch.nn.Conv2d(4, 4, 1),
        "clip": CLIPTextModel(CLIPTextConfig(**TEXT)).eval(),
    }
    state = {f"model.diffusion_model.{k}": v for k, v in modules["unet"].state_dict().items()}
    for part in ("encoder", "decoder", "quant_conv", "post_quant_conv"):
        state |= {f"first_stage_model.{part}.{k}": v for k, v in modules[part].state_dict().items()}
    clip = modules["clip"].state_dict().items()
    state |= {f"cond_stage_model.transformer.text_model.{k.removeprefix('text_model.')}": v for k, v in clip}
    root = tmp_path_factory.mktemp("single")
    path = root / "tiny_sd15.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    char_clip_tokenizer().save_pretrained(root / "tokenizer")
    return path, root / "tokenizer", modules


def test_single_file_checkpoint_loads_into_models_that_match_the_ldm_modules(ldm_checkpoint) -> None:
    path, tokenizer_dir, ldm = ldm_checkpoint
    pipeline = load_single_file(path, tokenizer_dir=tokenizer_dir, configs=tiny_configs())
    assert pipeline.family == "sd15" and pipeline.vae_scale_factor == 2
    latents, timesteps, context = unet_inputs(2)
    with torch.no_grad():
        expected = ldm["unet"](latents, timesteps, context=context)
        actual = pipeline.unet(latents, timesteps, encoder_hidden_states=context).sample
        torch.testing.assert_close(actual, expected, rtol=1e-4, atol=1e-5)
        z = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(2))
        expected_image = ldm["decoder"](ldm["post_quant_conv"](z))
        torch.testing.assert_close(pipeline.vae.decode(z).sample, expected_image, rtol=1e-4, atol=1e-5)
        ids = pipeline.tokenizers[0](["a red fox"], return_tensors="pt").input_ids
        torch.testing.assert_close(
            pipeline.text_encoders[0](ids).last_hidden_state, ldm["clip"](ids).last_hidden_state
        )


def test_single_file_without_a_tokenizer_folder_names_the_option(ldm_checkpoint, tmp_path: Path) -> None:
    path, _, _ = ldm_checkpoint
    with pytest.raises(InputError, match=r"tokenizer folder .* does not exist"):
        load_single_file(path, tokenizer_dir=tmp_path / "none", configs=tiny_configs())


def test_checkpoint_of_an_unknown_model_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "other.safetensors"
    save_file({"some.weight": torch.zeros(2)}, str(path))
    tokenizer_dir = tmp_path / "tokenizer"
    char_clip_tokenizer().save_pretrained(tokenizer_dir)
    with pytest.raises(InputError, match=r"neither an SD1\.5 nor an SDXL"):
        load_single_file(path, tokenizer_dir=tokenizer_dir)


@pytest.mark.parametrize("name", ["missing-folder", "missing.safetensors"])
def test_missing_model_path_is_named(tmp_path: Path, name: str) -> None:
    with pytest.raises(InputError, match=name):
        load_pipeline(tmp_path / name)


def test_folder_that_is_not_a_diffusers_model_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no 'unet' subfolder"):
        load_pipeline(tmp_path)


def test_unsupported_file_type_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "model.bin"
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(InputError, match=r"\.safetensors or \.ckpt"):
        load_pipeline(path)
