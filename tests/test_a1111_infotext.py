"""The AnimateDiff infotext entry: written in the original's form, pasted back into the accordion."""

from __future__ import annotations

from types import SimpleNamespace

from lib_animatediff.a1111 import infotext
from lib_animatediff.params import AnimateDiffParams
from lib_animatediff.version import version


def test_written_entry_pastes_back_into_every_accordion_field() -> None:
    params = AnimateDiffParams(
        model="sub/mm_v3.safetensors", enable=True, video_length=20, fps=12, loop_number=2, closed_loop="R+P",
        batch_size=8, stride=2, overlap=3, interp="Optical flow", interp_x=3, freeinit_enable=True,
        freeinit_filter="gaussian", freeinit_iters=4, fuse_method="gauss", context_schedule="static",
        latent_power=2, latent_scale=16, request_id="abc",
    )  # fmt: skip
    p = SimpleNamespace(extra_generation_params={})
    infotext.write(p, params, SimpleNamespace(short_hash="0123abcd"), is_img2img=True)
    value = p.extra_generation_params["AnimateDiff"]
    assert value.startswith("model: sub/mm_v3.safetensors, video_length: 20, fps: 12")
    assert "mm_hash: 0123abcd" in value
    assert value.endswith(f", version: {version()}") and version() != "unknown"

    pasted = {"Prompt": "a cat", "AnimateDiff": value}
    infotext.on_infotext_pasted("", pasted)
    fields = {
        key.removeprefix("AnimateDiff "): v for key, v in pasted.items() if key.startswith("AnimateDiff ")
    }
    assert fields.pop("enable") is True and fields.pop("mm_hash") == "0123abcd"
    assert fields.pop("version") == version()
    restored = AnimateDiffParams(enable=True, format=params.format, **fields)
    assert restored == params


def test_pasting_text_without_animatediff_changes_nothing() -> None:
    pasted = {"Prompt": "a cat", "Steps": "20"}
    infotext.on_infotext_pasted("", pasted)
    assert pasted == {"Prompt": "a cat", "Steps": "20"}
