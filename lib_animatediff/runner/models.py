"""The image models the runner drives, loaded offline from a diffusers folder or a single file.

``load_pipeline(path)`` accepts a diffusers folder (``unet/``, ``vae/``, ``text_encoder/``,
``tokenizer/`` and, for SDXL, ``text_encoder_2/``, ``tokenizer_2/``) or a single-file SD1.5 / SDXL
checkpoint (``.safetensors``; ``.ckpt`` read with ``weights_only=True``). Nothing is fetched: a single
file carries no tokenizer, so its CLIP vocabulary comes from ``tokenizer_dir`` or an existing local
Hugging Face cache entry of ``openai/clip-vit-large-patch14``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from diffusers.loaders.single_file_utils import (
    convert_ldm_clip_checkpoint,
    convert_ldm_unet_checkpoint,
    convert_ldm_vae_checkpoint,
    convert_open_clip_checkpoint,
)
from torch import nn
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

from lib_animatediff.runner.configs import CLIP_TOKENIZER_REPO, FAMILY_CONFIGS
from lib_animatediff.runner.errors import InputError

SD15_MARKER = "cond_stage_model.transformer.text_model.embeddings.token_embedding.weight"
SDXL_MARKER = "conditioner.embedders.1.model.token_embedding.weight"
SDXL_OPEN_CLIP_PREFIX = "conditioner.embedders.1.model."


@dataclass(frozen=True)
class Pipeline:
    """UNet, VAE, text encoder(s) and tokenizer(s) of one SD1.5 or SDXL model."""

    family: str
    unet: UNet2DConditionModel
    vae: AutoencoderKL
    text_encoders: tuple[nn.Module, ...]
    tokenizers: tuple[CLIPTokenizer, ...]

    @property
    def vae_scale_factor(self) -> int:
        """Pixels per latent pixel along each side (8 for SD)."""
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    def to(self, device: torch.device | str, dtype: torch.dtype) -> Pipeline:
        """The same models moved to ``device``; UNet and text encoders cast to ``dtype``.

        The VAE stays in float32 where its config asks for it (SDXL's ``force_upcast``).
        """
        vae_dtype = torch.float32 if self.vae.config.get("force_upcast", False) else dtype
        return replace(
            self,
            unet=self.unet.to(device=device, dtype=dtype),
            vae=self.vae.to(device=device, dtype=vae_dtype),
            text_encoders=tuple(encoder.to(device=device, dtype=dtype) for encoder in self.text_encoders),
        )


def load_pipeline(path: str | Path, *, tokenizer_dir: str | Path | None = None) -> Pipeline:
    """Load the models at ``path`` (a diffusers folder or a single checkpoint file) on the CPU."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"model {str(path)!r} does not exist")
    if path.is_dir():
        return load_diffusers_folder(path)
    return load_single_file(path, tokenizer_dir=tokenizer_dir)


def load_diffusers_folder(folder: Path) -> Pipeline:
    """Load a diffusers-format model folder (``save_pretrained`` layout) without network access."""
    for part in ("unet", "vae", "text_encoder", "tokenizer"):
        if not (folder / part).is_dir():
            raise InputError(
                f"model folder {str(folder)!r} has no {part!r} subfolder (not a diffusers folder)"
            )
    is_sdxl = (folder / "text_encoder_2").is_dir()
    encoders: list[nn.Module] = [
        CLIPTextModel.from_pretrained(folder / "text_encoder", local_files_only=True)
    ]
    tokenizers = [CLIPTokenizer.from_pretrained(folder / "tokenizer", local_files_only=True)]
    if is_sdxl:
        encoders.append(
            CLIPTextModelWithProjection.from_pretrained(folder / "text_encoder_2", local_files_only=True)
        )
        tokenizers.append(CLIPTokenizer.from_pretrained(folder / "tokenizer_2", local_files_only=True))
    return Pipeline(
        family="sdxl" if is_sdxl else "sd15",
        unet=UNet2DConditionModel.from_pretrained(folder / "unet", local_files_only=True).eval(),
        vae=AutoencoderKL.from_pretrained(folder / "vae", local_files_only=True).eval(),
        text_encoders=tuple(encoder.eval() for encoder in encoders),
        tokenizers=tuple(tokenizers),
    )


def read_checkpoint(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a ``.safetensors`` or ``.ckpt`` file (the latter never unpickles code)."""
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    if path.suffix in (".ckpt", ".pt", ".pth"):
        loaded = torch.load(path, map_location="cpu", weights_only=True)
        loaded = loaded.get("state_dict", loaded) if isinstance(loaded, dict) else loaded
        if not isinstance(loaded, dict):
            raise InputError(f"checkpoint {str(path)!r} does not hold a state dict")
        return {k: v for k, v in loaded.items() if isinstance(v, torch.Tensor)}
    raise InputError(f"model {str(path)!r}: expected a diffusers folder, .safetensors or .ckpt file")


def checkpoint_family(checkpoint: Mapping[str, torch.Tensor], path: Path) -> str:
    """``"sd15"`` or ``"sdxl"`` from the text-encoder keys of an original-layout checkpoint."""
    if SDXL_MARKER in checkpoint:
        return "sdxl"
    if SD15_MARKER in checkpoint:
        return "sd15"
    raise InputError(
        f"checkpoint {str(path)!r} is neither an SD1.5 nor an SDXL model (no known text-encoder keys)"
    )


def load_single_file(
    path: Path,
    *,
    tokenizer_dir: str | Path | None = None,
    configs: Mapping[str, Mapping[str, Any]] = FAMILY_CONFIGS,
) -> Pipeline:
    """Build the models of a single-file SD1.5 / SDXL checkpoint from the shipped ``configs``."""
    tokenizers: tuple[Any, ...] = _local_clip_tokenizers(tokenizer_dir)
    checkpoint = read_checkpoint(path)
    family = checkpoint_family(checkpoint, path)
    config = configs[family]
    unet = _assemble(
        UNet2DConditionModel, config["unet"], convert_ldm_unet_checkpoint(checkpoint, config["unet"])
    )
    vae = _assemble(AutoencoderKL, config["vae"], convert_ldm_vae_checkpoint(checkpoint, config["vae"]))
    clip_l = CLIPTextModel(CLIPTextConfig(**config["text_encoders"][0]))
    _load_text_encoder(clip_l, convert_ldm_clip_checkpoint(checkpoint), path)
    encoders: tuple[nn.Module, ...] = (clip_l,)
    if family == "sdxl":
        big_g = CLIPTextModelWithProjection(CLIPTextConfig(**config["text_encoders"][1]))
        _load_text_encoder(
            big_g, convert_open_clip_checkpoint(big_g, checkpoint, SDXL_OPEN_CLIP_PREFIX), path
        )
        encoders += (big_g,)
    else:
        tokenizers = tokenizers[:1]
    return Pipeline(family=family, unet=unet, vae=vae, text_encoders=encoders, tokenizers=tokenizers)


def _assemble(cls: Any, config: Mapping[str, Any], state: dict[str, torch.Tensor]) -> nn.Module:
    with torch.device("meta"):
        model = cls.from_config(dict(config))
    model.load_state_dict(state, strict=True, assign=True)
    return model.eval()


def _load_text_encoder(model: nn.Module, state: dict[str, torch.Tensor], path: Path) -> None:
    """Load converted CLIP weights; a checkpoint's ``position_ids`` are ignored (the model keeps its own)."""
    if not any(key.startswith("text_model.") for key in model.state_dict()):
        state = {key.removeprefix("text_model."): value for key, value in state.items()}
    state = {key: value for key, value in state.items() if not key.endswith("position_ids")}
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [key for key in missing if not key.endswith("position_ids")]
    if missing or unexpected:
        raise InputError(
            f"checkpoint {str(path)!r}: text encoder weights do not fit "
            f"(missing {missing[:3]}, unexpected {unexpected[:3]})"
        )
    model.eval()


def _local_clip_tokenizers(tokenizer_dir: str | Path | None) -> tuple[CLIPTokenizer, CLIPTokenizer]:
    """CLIP tokenizers for both SDXL encoders (the second pads with ``!``), from local files only."""
    source: str | Path = CLIP_TOKENIZER_REPO if tokenizer_dir is None else Path(tokenizer_dir)
    if isinstance(source, Path) and not source.is_dir():
        raise InputError(f"tokenizer folder {str(source)!r} does not exist")
    try:
        first = CLIPTokenizer.from_pretrained(source, local_files_only=True)
        second = CLIPTokenizer.from_pretrained(source, local_files_only=True, pad_token="!")
    except OSError as error:
        raise InputError(
            "a single-file checkpoint carries no tokenizer: pass --tokenizer DIR (a folder with a CLIP "
            f"tokenizer) or have {CLIP_TOKENIZER_REPO!r} in the local Hugging Face cache ({error})"
        ) from error
    return first, second
