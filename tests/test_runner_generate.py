"""One run on tiny pipelines: prompt travel reaches the per-frame conditioning, FreeInit, SDXL
conditioning, and generate's streaming and whole-clip output paths."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import UNet2DConditionModel
from PIL import Image
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

from lib_animatediff import output
from lib_animatediff.frame_ops import ping_pong
from lib_animatediff.interpolate import interpolated_count
from lib_animatediff.params import AnimateDiffParams
from lib_animatediff.runner import generate as generate_module
from lib_animatediff.runner.errors import InputError
from lib_animatediff.runner.generate import SamplingSettings, frame_conditioning, generate, render
from lib_animatediff.runner.models import Pipeline
from lib_animatediff.runner.text import encode_prompts
from lib_animatediff.runner.tiny import char_clip_tokenizer, tiny_motion_state_dict, tiny_pipeline
from motion_module import MotionModule, load_motion_module
from tests.fixtures.tiny_models import block_channels, diffusers_config

FRAMES = 8


@pytest.fixture(scope="module")
def models():
    pipeline = tiny_pipeline(seed=2)
    mm = load_motion_module(tiny_motion_state_dict(tuple(pipeline.unet.config.block_out_channels), seed=3))
    return pipeline, mm


def settings(**changes) -> SamplingSettings:
    values = {"prompt": "a kite", "width": 32, "height": 32, "steps": 2, "sampler": "DDIM", "seed": 4}
    return SamplingSettings(**(values | changes))


def test_prompt_travel_keyframes_get_their_own_prompt_and_frames_between_blend(models) -> None:
    pipeline, _ = models
    sampling = settings(prompt="sky\n0: red kite\n6: blue kite", negative_prompt="dark")
    cond, uncond = frame_conditioning(pipeline, sampling, FRAMES, AnimateDiffParams(batch_size=FRAMES))
    keys, _ = encode_prompts(pipeline, ["sky, red kite, ", "sky, blue kite, ", "dark"])
    torch.testing.assert_close(cond.hidden[0], keys[0])
    torch.testing.assert_close(cond.hidden[6], keys[1])
    torch.testing.assert_close(cond.hidden[7], keys[1])
    between = cond.hidden[3]
    assert (between - keys[0]).abs().max() > 1e-4 and (between - keys[1]).abs().max() > 1e-4
    torch.testing.assert_close(uncond.hidden, keys[2:3].expand(FRAMES, -1, -1))


def test_freeinit_runs_every_pass_and_changes_the_video(models) -> None:
    pipeline, mm = models
    plain = render(pipeline, mm, AnimateDiffParams(batch_size=FRAMES), settings(), progress=False)
    params = AnimateDiffParams(batch_size=FRAMES, freeinit_enable=True, freeinit_iters=2)
    freeinit = render(pipeline, mm, params, settings(), progress=False)
    assert plain.frame_evaluations == 2 * FRAMES * 2
    assert freeinit.frame_evaluations == 2 * plain.frame_evaluations
    assert np.abs(np.stack(plain.frames).astype(int) - np.stack(freeinit.frames)).max() > 0


def test_same_seed_same_video_and_the_unet_is_restored(models) -> None:
    pipeline, mm = models
    before = {k: v.clone() for k, v in pipeline.unet.state_dict().items()}
    first = render(pipeline, mm, AnimateDiffParams(batch_size=FRAMES), settings(), progress=False)
    second = render(pipeline, mm, AnimateDiffParams(batch_size=FRAMES), settings(), progress=False)
    np.testing.assert_array_equal(np.stack(first.frames), np.stack(second.frames))
    after = pipeline.unet.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)


def written_png_frames(outdir: Path) -> np.ndarray:
    (folder,) = [p for p in (outdir / "AnimateDiff").glob("*/*") if p.is_dir()]
    return np.stack([np.asarray(Image.open(p)) for p in sorted(folder.glob("*.png"))])


def test_generate_streams_the_decoded_frames_into_the_writers(models, tmp_path: Path, monkeypatch) -> None:
    """10 of 12 frames (context 12): only those 10 are decoded, DECODE_CHUNK at a time, and the
    writers get them from an iterator (streamed), not as a list."""
    pipeline, mm = models
    params = AnimateDiffParams(video_length=10, batch_size=12, format=("PNG", "GIF"))
    rendered = render(pipeline, mm, params, settings(), progress=False)
    chunks: list[int] = []
    decode_chunk = generate_module.decode_chunk
    monkeypatch.setattr(
        generate_module, "decode_chunk", lambda p, z: chunks.append(len(z)) or decode_chunk(p, z)
    )
    given: list[object] = []
    save = output.save
    monkeypatch.setattr(
        output, "save", lambda frames, *args, **kwargs: given.append(frames) or save(frames, *args, **kwargs)
    )
    result = generate(pipeline, mm, params, settings(), tmp_path, progress=False)
    assert chunks == [generate_module.DECODE_CHUNK, 10 - generate_module.DECODE_CHUNK]
    assert len(given) == 1 and isinstance(given[0], Iterator)
    assert result.frames == 10 and [p.suffix for p in result.paths] == [".gif", ""]
    np.testing.assert_array_equal(written_png_frames(tmp_path), np.stack(rendered.frames[:10]))


def test_generate_ping_pong_and_interpolation_use_the_whole_clip(models, tmp_path: Path) -> None:
    pipeline, mm = models
    params = AnimateDiffParams(video_length=FRAMES, batch_size=FRAMES, closed_loop="A", format=("PNG",))
    rendered = render(pipeline, mm, params, settings(), progress=False)
    result = generate(pipeline, mm, params, settings(), tmp_path / "a", progress=False)
    assert result.frames == 2 * FRAMES - 2
    np.testing.assert_array_equal(written_png_frames(tmp_path / "a"), np.stack(ping_pong(rendered.frames)))
    params = dataclasses.replace(params, closed_loop="R-P", interp="Optical flow", interp_x=2)
    result = generate(pipeline, mm, params, settings(), tmp_path / "i", progress=False)
    assert result.frames == interpolated_count(FRAMES, 2) == len(written_png_frames(tmp_path / "i"))


def test_size_not_a_multiple_of_the_vae_factor_is_rejected_before_work(models) -> None:
    pipeline, mm = models
    with pytest.raises(InputError, match="width=30"):
        render(pipeline, mm, AnimateDiffParams(batch_size=FRAMES), settings(width=30), progress=False)


def test_context_longer_than_the_positional_encoding_is_rejected(models) -> None:
    pipeline, mm = models
    with pytest.raises(ValueError, match="batch_size"):
        render(pipeline, mm, AnimateDiffParams(batch_size=mm.pe_length + 1), settings(), progress=False)


def tiny_sdxl_pipeline() -> Pipeline:
    """SDXL's structure in miniature: two CLIP encoders (hidden states side by side, pooled from the
    second) and a UNet with ``text_time`` added conditioning."""
    torch.manual_seed(9)
    width, time_dim = 16, 8
    unet_config = diffusers_config("sdxl") | {
        "cross_attention_dim": 2 * width,
        "addition_embed_type": "text_time",
        "addition_time_embed_dim": time_dim,
        "projection_class_embeddings_input_dim": width + 6 * time_dim,
    }
    tokenizer = char_clip_tokenizer()
    text = {
        "vocab_size": len(tokenizer),
        "hidden_size": width,
        "intermediate_size": 32,
        "num_hidden_layers": 2,
    }
    text |= {"num_attention_heads": 2, "projection_dim": width, "bos_token_id": 512, "eos_token_id": 513}
    return Pipeline(
        family="sdxl",
        unet=UNet2DConditionModel(**unet_config).eval(),
        vae=tiny_pipeline(seed=2).vae,
        text_encoders=(
            CLIPTextModel(CLIPTextConfig(**text)).eval(),
            CLIPTextModelWithProjection(CLIPTextConfig(**text)).eval(),
        ),
        tokenizers=(tokenizer, tokenizer),
    )


def test_sdxl_pipeline_gets_pooled_and_time_conditioning_and_renders() -> None:
    pipeline = tiny_sdxl_pipeline()
    mm = load_motion_module(MotionModule("sdxl", block_channels("sdxl"), has_mid_block=False).state_dict())
    sampling = settings(prompt="0: a kite\n4: a bird", negative_prompt="dark", width=32, height=48)
    params = AnimateDiffParams(batch_size=FRAMES)
    cond, uncond = frame_conditioning(pipeline, sampling, FRAMES, params)
    assert cond.hidden.shape[-1] == 32 and cond.pooled.shape == (FRAMES, 16)
    assert cond.time_ids.tolist() == [[48, 32, 0, 0, 48, 32]] * FRAMES
    with torch.no_grad():
        projected = pipeline.text_encoders[1](pipeline.tokenizers[1](["dark"], return_tensors="pt").input_ids)
    torch.testing.assert_close(uncond.pooled[0], projected.text_embeds[0])
    result = render(pipeline, mm, params, sampling, progress=False)
    assert len(result.frames) == FRAMES and result.frames[0].shape == (48, 32, 3)
