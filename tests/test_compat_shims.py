"""The modules sd-webui-controlnet imports by the original extension's paths: ``scripts.animatediff_mm``
(SparseCtrl's motion part), ``scripts.animatediff_utils`` (``get_animatediff_arg``) and
``scripts.animatediff_i2ibatch``."""

from __future__ import annotations

import copy
import math
import sys

import pytest
import torch

from lib_animatediff.a1111 import compat
from lib_animatediff.a1111.compat import PromptScheduler, get_animatediff_arg
from lib_animatediff.params import AnimateDiffParams
from motion_module import MotionModuleError, inject
from motion_module.wrapper import LAYOUTS, MotionModuleType, MotionWrapper
from tests.fake_webui.harness import MODEL_NAME, load_extension
from tests.fixtures.mm_checkpoints import make_motion_module, make_state_dict
from tests.fixtures.tiny_models import block_channels, tiny_ldm_unet

# The original's SparseCtrl motion part (motion_module.py: MotionWrapper with one "Temporal_Self"
# attention per VanillaTemporalModule, 2 modules per down block, no mid or up blocks, PE 32),
# written out as the rule its state-dict keys follow: suffix -> shape for channels c.
SPARSECTRL_LAYER = {
    "norm.weight": lambda c: (c,),
    "norm.bias": lambda c: (c,),
    "proj_in.weight": lambda c: (c, c),
    "proj_in.bias": lambda c: (c,),
    "transformer_blocks.0.attention_blocks.0.to_q.weight": lambda c: (c, c),
    "transformer_blocks.0.attention_blocks.0.to_k.weight": lambda c: (c, c),
    "transformer_blocks.0.attention_blocks.0.to_v.weight": lambda c: (c, c),
    "transformer_blocks.0.attention_blocks.0.to_out.0.weight": lambda c: (c, c),
    "transformer_blocks.0.attention_blocks.0.to_out.0.bias": lambda c: (c,),
    "transformer_blocks.0.attention_blocks.0.pos_encoder.pe": lambda c: (1, 32, c),
    "transformer_blocks.0.norms.0.weight": lambda c: (c,),
    "transformer_blocks.0.norms.0.bias": lambda c: (c,),
    "transformer_blocks.0.ff.net.0.proj.weight": lambda c: (8 * c, c),
    "transformer_blocks.0.ff.net.0.proj.bias": lambda c: (8 * c,),
    "transformer_blocks.0.ff.net.2.weight": lambda c: (c, 4 * c),
    "transformer_blocks.0.ff.net.2.bias": lambda c: (c,),
    "transformer_blocks.0.ff_norm.weight": lambda c: (c,),
    "transformer_blocks.0.ff_norm.bias": lambda c: (c,),
    "proj_out.weight": lambda c: (c, c),
    "proj_out.bias": lambda c: (c,),
}


def test_sparsectrl_wrapper_has_the_original_keys_and_shapes() -> None:
    expected = {
        f"down_blocks.{i}.motion_modules.{j}.temporal_transformer.{suffix}": shape(c)
        for i, c in enumerate((320, 640, 1280, 1280))
        for j in range(2)
        for suffix, shape in SPARSECTRL_LAYER.items()
    }
    with torch.device("meta"):
        wrapper = MotionWrapper("", "", MotionModuleType.SparseCtrl)
    assert {key: tuple(value.shape) for key, value in wrapper.state_dict().items()} == expected
    assert len(wrapper.down_blocks) == 4 and len(wrapper.up_blocks) == 0 and wrapper.mid_block is None
    assert wrapper.mm_type is MotionModuleType.SparseCtrl


@pytest.mark.parametrize(
    ("variant", "mm_type"),
    [
        ("v1", MotionModuleType.AnimateDiffV1),
        ("v2", MotionModuleType.AnimateDiffV2),
        ("v3", MotionModuleType.AnimateDiffV3),
        ("sdxl", MotionModuleType.AnimateDiffXL),
    ],
)
def test_the_released_types_have_their_checkpoint_keys(variant: str, mm_type: MotionModuleType) -> None:
    assert set(LAYOUTS) == set(MotionModuleType)
    released = make_state_dict(variant, channels=(32, 32, 32, 32)[: 3 if variant == "sdxl" else 4])
    with torch.device("meta"):
        wrapper = MotionWrapper("mm", "hash", mm_type)
    assert set(wrapper.state_dict()) == set(released)


def test_a_layer_called_without_frames_asks_its_frame_source() -> None:
    channels = block_channels("sd15")
    foreign = make_motion_module("v3", channels=channels, seed=2)
    layer = foreign.down_blocks[0].motion_modules[0]
    x = torch.randn(2 * 4, channels[0], 3, 3, generator=torch.Generator().manual_seed(0))
    with pytest.raises(MotionModuleError, match="no frame source bound"):
        layer(x)
    foreign.bind_frame_source(lambda: 4)
    assert torch.equal(layer(x), layer(x, 4))
    assert not torch.allclose(layer(x), layer(x, 2))
    foreign.bind_frame_source(None)
    with pytest.raises(MotionModuleError, match="no frame source bound"):
        layer(x)


def test_sparsectrl_layers_take_the_frames_of_the_injection_being_sampled() -> None:
    channels = block_channels("sd15")
    unet_module = make_motion_module("v3", channels=channels, seed=1)
    with torch.device("meta"):
        sparsectrl = compat.MotionWrapper("", "", MotionModuleType.SparseCtrl)
    layer = sparsectrl.down_blocks[0].motion_modules[0]
    assert layer.frame_source is compat.sampling_frames
    with pytest.raises(MotionModuleError, match="outside an AnimateDiff generation"):
        compat.sampling_frames()
    with inject(tiny_ldm_unet("sd15"), unet_module) as handle:
        handle.set_frames(4)
        with pytest.raises(MotionModuleError, match="outside an AnimateDiff generation"):
            compat.sampling_frames()  # injected, but not named for a sampling call
        with compat.foreign_layers_follow(handle):
            assert compat.sampling_frames() == 4
            handle.set_frames(2)
            assert compat.sampling_frames() == 2
    with pytest.raises(MotionModuleError, match="outside an AnimateDiff generation"):
        compat.sampling_frames()


def test_windows_give_foreign_layers_their_frame_count(monkeypatch, tmp_path) -> None:
    ext = load_extension(monkeypatch, tmp_path)
    seen: list[tuple[int, int]] = []
    unet = ext.sd_model.model.diffusion_model
    unet.register_forward_pre_hook(
        lambda module, args: seen.append((args[0].shape[0], compat.sampling_frames()))
    )
    params = AnimateDiffParams(model=MODEL_NAME, enable=True, video_length=6, batch_size=4, format=("GIF",))
    ext.host.processing.process_images(ext.processing(params))
    assert seen and {frames for _, frames in seen} == {4} and {rows for rows, _ in seen} == {8}
    with pytest.raises(MotionModuleError, match="outside an AnimateDiff generation"):
        compat.sampling_frames()


def test_get_animatediff_arg_views_the_run_and_accepts_is_i2i_batch(monkeypatch, tmp_path) -> None:
    ext = load_extension(monkeypatch, tmp_path)
    params = AnimateDiffParams(model=MODEL_NAME, enable=True, video_length=6, batch_size=4, closed_loop="R+P")
    p = ext.processing(params, prompt="a\n0: cat\n3: dog")
    p.scripts.before_process(p)
    args = get_animatediff_arg(p)
    assert (args.enable, args.video_length, args.batch_size, args.closed_loop) == (True, 6, 4, "R+P")
    assert sorted(args.prompt_scheduler.prompt_map) == [0, 3]
    args.is_i2i_batch = True
    assert get_animatediff_arg(ext.processing(AnimateDiffParams(enable=False))) is None
    api = get_animatediff_arg(
        ext.processing({"enable": True, "model": MODEL_NAME, "video_length": 5}, img2img=True)
    )
    assert api.enable and api.video_length == 5


def test_prompt_scheduler_travels_rows_between_key_frames_by_slerp() -> None:
    e1, e2 = torch.zeros(1, 2), torch.zeros(1, 2)
    e1[0, 0], e2[0, 1] = 1.0, 1.0
    scheduler = copy.deepcopy(PromptScheduler())
    scheduler.prompt_map = {0: "", 2: ""}
    cond = torch.stack([e1, e1, e2, e2, e2])  # ControlNet holds each key's embedding until the next key
    travelled = scheduler.multi_cond(cond, False)
    half = torch.tensor([[math.sqrt(0.5), math.sqrt(0.5)]])
    assert torch.allclose(travelled[1], half, atol=1e-6)  # slerp(e1, e2, 1/2) by hand
    assert torch.equal(travelled[0], e1) and torch.equal(travelled[2:], cond[2:])


def test_the_shims_are_loaded_with_the_extension_under_the_original_paths(monkeypatch, tmp_path) -> None:
    from lib_animatediff.a1111 import i2i_batch

    load_extension(monkeypatch, tmp_path)
    assert sys.modules["scripts.animatediff_mm"].MotionWrapper is compat.MotionWrapper
    assert issubclass(compat.MotionWrapper, MotionWrapper)
    assert sys.modules["scripts.animatediff_utils"].get_animatediff_arg is compat.get_animatediff_arg
    assert (
        sys.modules["scripts.animatediff_i2ibatch"].animatediff_i2i_batch is i2i_batch.animatediff_i2i_batch
    )
