"""SDXL in the fake A1111 host: conditionings are ``DictWithShape`` dicts (``crossattn`` + ``vector``),
which A1111's CFG denoiser reads ``.shape`` off; prompt travel must hand them back with that type."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

from lib_animatediff.params import AnimateDiffParams
from tests.fake_webui.harness import MODEL_NAME, Extension, load_extension, unet_fingerprint

pytestmark = pytest.mark.fakehost

FRAMES = 4


@pytest.fixture
def ext(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Extension:
    return load_extension(monkeypatch, tmp_path, sdxl=True)


def test_sdxl_prompt_travel_blends_both_conditionings_per_frame(ext: Extension) -> None:
    text_conds: list = []
    contexts: list[torch.Tensor] = []
    ext.host.script_callbacks.on_cfg_denoiser(lambda params: text_conds.append(params.text_cond))
    unet = ext.sd_model.model.diffusion_model
    unet.register_forward_pre_hook(
        lambda m, args, kwargs: contexts.append(kwargs["context"]), with_kwargs=True
    )
    before = unet_fingerprint(unet)
    params = AnimateDiffParams(
        model=MODEL_NAME,
        enable=True,
        video_length=FRAMES,
        batch_size=FRAMES,
        closed_loop="N",
        format=("GIF",),
    )
    prompt = "masterpiece\n0: a cat\n3: a dog"
    res = ext.host.processing.process_images(ext.processing(params, prompt=prompt))

    (gif,) = sorted((ext.host.root / "outputs" / "AnimateDiff").rglob("*.gif"))
    with Image.open(gif) as image:
        assert image.n_frames == FRAMES
    assert res.images == [str(gif)]
    travelled = text_conds[-1]  # what our callback (registered first) left for the denoiser
    assert type(travelled).__name__ == "DictWithShape" and travelled.shape[0] == FRAMES
    keys = ext.sd_model.get_learned_conditioning(["masterpiece, a cat, ", "masterpiece, a dog, "])
    for name in ("crossattn", "vector"):
        rows = travelled[name]
        assert torch.equal(rows[0], keys[name][0]) and torch.equal(rows[3], keys[name][1])
        assert not torch.allclose(rows[1], rows[2])
    assert torch.equal(contexts[0][:FRAMES], travelled["crossattn"])
    assert unet_fingerprint(unet) == before
