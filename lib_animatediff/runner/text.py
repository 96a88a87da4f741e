"""Prompt text to UNet conditioning with the pipeline's CLIP text encoder(s).

SD1.5: the last hidden state of CLIP-L (A1111's "clip skip 1"). SDXL: the penultimate hidden states
of CLIP-L and OpenCLIP-bigG side by side, plus bigG's projected pooled embedding.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from lib_animatediff.runner.models import Pipeline


@torch.no_grad()
def encode_prompts(pipeline: Pipeline, prompts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``(hidden (P, T, D), pooled (P, D2) or None)`` for ``P`` prompts."""
    hidden: list[torch.Tensor] = []
    outputs = []
    sdxl = pipeline.family == "sdxl"
    for encoder, tokenizer in zip(pipeline.text_encoders, pipeline.tokenizers, strict=True):
        ids = tokenizer(
            list(prompts),
            padding="max_length",
            max_length=tokenizer.model_max_length,
            truncation=True,
            return_tensors="pt",
        ).input_ids.to(encoder.device)
        outputs.append(encoder(ids, output_hidden_states=sdxl))
        hidden.append(outputs[-1].hidden_states[-2] if sdxl else outputs[-1].last_hidden_state)
    pooled = outputs[-1].text_embeds if sdxl else None
    return torch.cat(hidden, dim=-1), pooled
