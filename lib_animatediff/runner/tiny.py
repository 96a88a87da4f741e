"""A tiny, seeded, random-weight SD1.5-shaped pipeline and motion module, built in code.

Used by ``python -m lib_animatediff demo`` (and the benchmarks) so that the whole path runs with no
downloaded weights: the frames it produces are noise. The layouts are the real ones scaled down:
a 4-level ``UNet2DConditionModel`` (attention on the first three levels), a 4-level
``AutoencoderKL`` (8x downsampling), a 2-layer ``CLIPTextModel`` with a character-level CLIP
tokenizer (byte alphabet, no merges), and a motion-module state dict in the original AnimateDiff
key layout (v3-like: no mid block, 32-frame positional encoding).
"""

from __future__ import annotations

import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

from lib_animatediff.runner.models import Pipeline
from motion_module.model import MotionModule

TINY_CHANNELS = (32, 32, 64, 64)
TINY_TEXT_WIDTH = 32
TINY_TOKENS = 77


def byte_alphabet() -> list[str]:
    """The 256 printable stand-ins for bytes that byte-level BPE tokenizers (CLIP's) use."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), 256)]
    others = [b for b in range(256) if b not in printable]
    return [chr(b) for b in printable] + [chr(256 + i) for i in range(len(others))]


def char_clip_tokenizer(max_length: int = TINY_TOKENS) -> CLIPTokenizer:
    """A CLIP tokenizer whose vocabulary is the byte alphabet alone (one token per character)."""
    alphabet = byte_alphabet()
    vocab = {token: i for i, token in enumerate([*alphabet, *(c + "</w>" for c in alphabet)])}
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=max_length)


def tiny_pipeline(seed: int = 0) -> Pipeline:
    """Random-weight UNet, VAE, text encoder and tokenizer in SD1.5's layout, drawn from ``seed``."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        unet = UNet2DConditionModel(
            sample_size=8,
            block_out_channels=TINY_CHANNELS,
            layers_per_block=2,
            down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
            up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
            cross_attention_dim=TINY_TEXT_WIDTH,
            attention_head_dim=2,
        )
        vae = AutoencoderKL(
            block_out_channels=(32, 32, 32, 32),
            down_block_types=("DownEncoderBlock2D",) * 4,
            up_block_types=("UpDecoderBlock2D",) * 4,
            latent_channels=4,
            layers_per_block=1,
            sample_size=64,
        )
        tokenizer = char_clip_tokenizer()
        text_encoder = CLIPTextModel(
            CLIPTextConfig(
                vocab_size=len(tokenizer),
                hidden_size=TINY_TEXT_WIDTH,
                intermediate_size=64,
                num_hidden_layers=2,
                num_attention_heads=4,
                max_position_embeddings=TINY_TOKENS,
                bos_token_id=tokenizer.bos_token_id,
                eos_token_id=tokenizer.eos_token_id,
                pad_token_id=tokenizer.pad_token_id,
            )
        )
    return Pipeline(
        family="sd15",
        unet=unet.eval(),
        vae=vae.eval(),
        text_encoders=(text_encoder.eval(),),
        tokenizers=(tokenizer,),
    )


def tiny_motion_state_dict(
    channels: tuple[int, ...] = TINY_CHANNELS, *, seed: int = 0
) -> dict[str, torch.Tensor]:
    """A seeded random v3-layout motion-module state dict for a UNet with block ``channels``.

    Every temporal layer (2 per down level, 3 per up level, no mid block) gets torch's default
    random initialisation, including ``proj_out``, so the layers change the result.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        module = MotionModule("v3", channels, has_mid_block=False)
    return module.state_dict()
