"""Injection of a motion module into the ldm and diffusers UNets: positions, frame handling,
cross-frame GroupNorm, rejections, and exact restoration."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch
from torch import nn

from motion_module import MotionModuleError, inject
from tests.fixtures.tiny_models import (
    LAYOUTS,
    tiny_diffusers_unet,
    tiny_ldm_unet,
    tiny_motion_module,
    unet_inputs,
)

KINDS = [("ldm", layout) for layout in LAYOUTS] + [("diffusers", layout) for layout in LAYOUTS]
VARIANT_FOR = {"sd15": "v2", "sdxl": "sdxl"}
NO_MID_VARIANT_FOR = {"sd15": "v3", "sdxl": "sdxl"}
OTHER_FAMILY_VARIANT = {"sd15": "sdxl", "sdxl": "v3"}
# Positions from the reference table (algorithms-and-formats.md 3.1): input block -> (level, layer).
INPUT_POSITIONS = {
    "sd15": {1: (0, 0), 2: (0, 1), 4: (1, 0), 5: (1, 1), 7: (2, 0), 8: (2, 1), 10: (3, 0), 11: (3, 1)},
    "sdxl": {1: (0, 0), 2: (0, 1), 4: (1, 0), 5: (1, 1), 7: (2, 0), 8: (2, 1)},
}
OUTPUT_BLOCKS = {"sd15": 12, "sdxl": 9}
BEFORE_UPSAMPLER = {"sd15": {2, 5, 8}, "sdxl": {2, 5}}
# Motion modules are built once per variant; every test leaves them as it found them.
mm_of = functools.cache(tiny_motion_module)


@functools.cache
def wide_mm() -> nn.Module:
    """A v3 motion module twice as wide as the tiny UNets."""
    return tiny_motion_module("v3", model_channels=64)


def make_unet(kind: str, layout: str) -> nn.Module:
    return tiny_ldm_unet(layout) if kind == "ldm" else tiny_diffusers_unet(layout)


def run_unet(unet: nn.Module, batch: int, seed: int = 1) -> torch.Tensor:
    latents, timesteps, context = unet_inputs(batch, seed=seed)
    with torch.no_grad():
        if hasattr(unet, "input_blocks"):
            return unet(latents, timesteps, context=context)
        return unet(latents, timesteps, encoder_hidden_states=context).sample


def snapshot(model: nn.Module) -> dict:
    """Everything restore() must put back: the module tree, tensors, hooks and forward methods."""
    return {
        "modules": [(name, id(module)) for name, module in model.named_modules()],
        "tensors": {
            name: (t.data_ptr(), t.detach().clone()) for name, t in model.state_dict(keep_vars=True).items()
        },
        "hooks": [
            (name, dict(m._forward_hooks), dict(m._forward_pre_hooks)) for name, m in model.named_modules()
        ],
        "forwards": [(name, m.__dict__.get("forward"), type(m).forward) for name, m in model.named_modules()],
    }


def assert_unchanged(model: nn.Module, before: dict) -> None:
    after = snapshot(model)
    assert after["modules"] == before["modules"]
    assert after["hooks"] == before["hooks"]
    assert all(
        a[1] is b[1] and a[2] is b[2] for a, b in zip(after["forwards"], before["forwards"], strict=True)
    )
    assert after["tensors"].keys() == before["tensors"].keys()
    for name, (pointer, tensor) in before["tensors"].items():
        assert after["tensors"][name][0] == pointer, name
        assert torch.equal(after["tensors"][name][1], tensor), name


@pytest.fixture(scope="module")
def unets() -> dict[tuple[str, str], nn.Module]:
    return {kind: make_unet(*kind) for kind in KINDS}


def test_ldm_positions_follow_the_reference_table(unets: dict) -> None:
    for layout in LAYOUTS:
        unet, mm = unets[("ldm", layout)], mm_of(NO_MID_VARIANT_FOR[layout])
        with inject(unet, mm):
            for index, block in enumerate(unet.input_blocks):
                temporal = [layer for layer in block if hasattr(layer, "temporal")]
                if index in INPUT_POSITIONS[layout]:
                    level, i = INPUT_POSITIONS[layout][index]
                    assert block[-1] is temporal[0]
                    assert temporal[0].temporal is mm.down_blocks[level].motion_modules[i]
                else:
                    assert temporal == []
            for index in range(OUTPUT_BLOCKS[layout]):
                block = unet.output_blocks[index]
                position = -2 if index in BEFORE_UPSAMPLER[layout] else -1
                assert block[position].temporal is mm.up_blocks[index // 3].motion_modules[index % 3]
                if position == -2:
                    assert type(block[-1]).__name__ == "Upsample"
            middle = [type(layer).__name__ for layer in unet.middle_block]
            assert middle == ["ResBlock", "SpatialTransformer", "ResBlock"]


def test_ldm_mid_block_layer_sits_before_the_last_resblock(unets: dict) -> None:
    unet, mm = unets[("ldm", "sd15")], mm_of("v2")
    with inject(unet, mm):
        assert [type(layer).__name__ for layer in unet.middle_block] == [
            "ResBlock",
            "SpatialTransformer",
            "FramedTemporal",
            "ResBlock",
        ]
        assert unet.middle_block[2].temporal is mm.mid_block.motion_modules[0]


def test_diffusers_blocks_hold_their_layers_while_injected(unets: dict) -> None:
    for layout in LAYOUTS:
        unet, mm = unets[("diffusers", layout)], mm_of(VARIANT_FOR[layout])
        with inject(unet, mm):
            assert [list(block.motion_modules) for block in unet.down_blocks] == mm.down_layers
            assert [list(block.motion_modules) for block in unet.up_blocks] == mm.up_layers
            mid = getattr(unet.mid_block, "motion_modules", None)
            assert (list(mid) if mid is not None else None) == (
                [mm.mid_layer] if mm.mid_layer is not None else None
            )
            assert "down_blocks.0.motion_modules.1.temporal_transformer.proj_in.weight" in unet.state_dict()


@pytest.mark.parametrize("kind", KINDS, ids="-".join)
def test_layers_run_in_unet_order_once_each(unets: dict, kind: tuple[str, str]) -> None:
    unet, mm = unets[kind], mm_of(VARIANT_FOR[kind[1]])
    # Every layer's name, in the order the UNet must run them: down levels, mid, up levels.
    names = {
        id(layer): ("down", level, i)
        for level, layers in enumerate(mm.down_layers)
        for i, layer in enumerate(layers)
    }
    if mm.mid_layer is not None:
        names[id(mm.mid_layer)] = ("mid", 0, 0)
    names |= {
        id(layer): ("up", level, i)
        for level, layers in enumerate(mm.up_layers)
        for i, layer in enumerate(layers)
    }
    calls: list[tuple[str, int, int]] = []
    hooks = [
        layer.register_forward_hook(lambda module, args, output: calls.append(names[id(module)]))
        for layer in (m for m in mm.modules() if id(m) in names)
    ]
    try:
        with inject(unet, mm) as handle:
            handle.set_frames(2)
            run_unet(unet, 4)
    finally:
        for hook in hooks:
            hook.remove()
    assert calls == list(names.values())


@pytest.mark.parametrize("kind", KINDS, ids="-".join)
def test_restore_is_exact_after_success_and_idempotent(unets: dict, kind: tuple[str, str]) -> None:
    unet = unets[kind]
    variant = "v1" if kind[1] == "sd15" else "hotshotxl"
    before = snapshot(unet)
    plain = run_unet(unet, 4)
    handle = inject(unet, mm_of(variant))
    handle.set_frames(2)
    animated = run_unet(unet, 4)
    assert not torch.allclose(animated, plain)
    handle.restore()
    handle.restore()
    assert_unchanged(unet, before)
    assert torch.equal(run_unet(unet, 4), plain)
    assert not handle.active


@pytest.mark.parametrize("kind", KINDS, ids="-".join)
def test_restore_is_exact_after_a_forward_raised(unets: dict, kind: tuple[str, str]) -> None:
    unet = unets[kind]
    variant = "v1" if kind[1] == "sd15" else "hotshotxl"
    mm = mm_of(variant)
    before = snapshot(unet)

    def fail(module: nn.Module, args: tuple, output: torch.Tensor) -> None:
        raise RuntimeError("boom")

    failing = mm.up_blocks[1].motion_modules[2].register_forward_hook(fail)
    try:
        with pytest.raises(RuntimeError, match="boom"), inject(unet, mm) as handle:
            handle.set_frames(2)
            run_unet(unet, 4)
    finally:
        failing.remove()
    assert_unchanged(unet, before)


@pytest.mark.parametrize("kind", KINDS, ids="-".join)
def test_family_mismatch_is_rejected_with_nothing_changed(unets: dict, kind: tuple[str, str]) -> None:
    unet = unets[kind]
    mm = mm_of(OTHER_FAMILY_VARIANT[kind[1]])
    before = snapshot(unet)
    with pytest.raises(MotionModuleError, match="SDXL" if kind[1] == "sd15" else "SD1.5"):
        inject(unet, mm)
    assert_unchanged(unet, before)
    inject(unet, mm_of(VARIANT_FOR[kind[1]])).restore()


@pytest.mark.parametrize("kind", [("ldm", "sd15"), ("diffusers", "sd15")], ids="-".join)
def test_channel_mismatch_is_rejected_with_nothing_changed(unets: dict, kind: tuple[str, str]) -> None:
    unet = unets[kind]
    before = snapshot(unet)
    with pytest.raises(MotionModuleError, match="has 64 channels but the UNet has 32"):
        inject(unet, wide_mm())
    assert_unchanged(unet, before)


@pytest.mark.parametrize("variant", ["v1", "v2", "animatelcm"])
def test_window_longer_than_the_positional_encoding_is_rejected(unets: dict, variant: str) -> None:
    unet = unets[("ldm", "sd15")]
    mm = mm_of(variant)
    calls: list[int] = []
    hook = unet.register_forward_pre_hook(lambda module, args: calls.append(1))
    try:
        with inject(unet, mm) as handle:
            assert handle.max_frames == mm.pe_length
            handle.set_frames(mm.pe_length)
            with pytest.raises(MotionModuleError, match=f"frames={mm.pe_length + 1}"):
                handle.set_frames(mm.pe_length + 1)
            assert handle.frames == mm.pe_length
            handle.set_frames(np.int64(2))
            assert handle.frames == 2
            assert type(handle.frames) is int
            for bad in (0, -1, 2.0, True, "4"):
                with pytest.raises(MotionModuleError, match="frames"):
                    handle.set_frames(bad)
    finally:
        hook.remove()
    assert calls == []


@pytest.mark.parametrize("kind", KINDS, ids="-".join)
def test_batch_must_be_a_multiple_of_the_frame_count(unets: dict, kind: tuple[str, str]) -> None:
    unet = unets[kind]
    with inject(unet, mm_of(VARIANT_FOR[kind[1]])) as handle:
        with pytest.raises(MotionModuleError, match="set_frames"):
            run_unet(unet, 4)
        handle.set_frames(3)
        with pytest.raises(MotionModuleError, match=r"batch of 4 .* frames=3"):
            run_unet(unet, 4)


def test_one_motion_module_at_a_time(unets: dict) -> None:
    unet, other_unet = unets[("ldm", "sd15")], unets[("diffusers", "sd15")]
    mm = mm_of("v3")
    before = snapshot(unet)
    with inject(unet, mm):
        injected = snapshot(unet)
        with pytest.raises(MotionModuleError, match="already has a motion module"):
            inject(unet, mm_of("v2"))
        with pytest.raises(MotionModuleError, match="already injected"):
            inject(other_unet, mm)
        assert_unchanged(unet, injected)
    assert_unchanged(unet, before)
    with inject(other_unet, mm) as handle:
        assert handle.active


def test_set_frames_after_restore_is_rejected(unets: dict) -> None:
    handle = inject(unets[("ldm", "sd15")], mm_of("v3"))
    handle.restore()
    with pytest.raises(MotionModuleError, match="restored"):
        handle.set_frames(2)


def test_unknown_unet_type_is_rejected() -> None:
    with pytest.raises(MotionModuleError, match="Linear"):
        inject(nn.Linear(2, 2), mm_of("v3"))


def group_norm_float64(x: torch.Tensor, norm: nn.GroupNorm, frames: int) -> torch.Tensor:
    """GroupNorm over (F, C/groups, H, W) per group of frames, computed by hand in float64."""
    batch, channels, height, width = x.shape
    video = x.double().reshape(
        batch // frames, frames, norm.num_groups, channels // norm.num_groups, height, width
    )
    mean = video.mean(dim=(1, 3, 4, 5), keepdim=True)
    var = ((video - mean) ** 2).mean(dim=(1, 3, 4, 5), keepdim=True)
    normed = ((video - mean) / torch.sqrt(var + norm.eps)).reshape(batch, channels, height, width)
    return normed * norm.weight.double()[:, None, None] + norm.bias.double()[:, None, None]


def resblock_norms(unet: nn.Module) -> list[nn.GroupNorm]:
    if hasattr(unet, "input_blocks"):
        return [unet.input_blocks[1][0].in_layers[0], unet.output_blocks[4][0].out_layers[0], unet.out[0]]
    return [unet.down_blocks[0].resnets[1].norm1, unet.up_blocks[1].resnets[0].norm2, unet.conv_norm_out]


def spatial_norms(unet: nn.Module) -> list[nn.GroupNorm]:
    if hasattr(unet, "input_blocks"):
        return [unet.input_blocks[4][1].norm, unet.middle_block[1].norm]
    return [unet.down_blocks[1].attentions[0].norm, unet.mid_block.attentions[0].norm]


@pytest.mark.parametrize("kind", KINDS, ids="-".join)
@pytest.mark.parametrize(("groups", "frames"), [(3, 2), (1, 4)])
def test_cross_frame_groupnorm_matches_a_float64_reference(
    unets: dict, kind: tuple[str, str], groups: int, frames: int
) -> None:
    unet = unets[kind]
    mm = mm_of("v1" if kind[1] == "sd15" else "hotshotxl")
    assert mm.cross_frame_groupnorm
    seen: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def record(module: nn.Module, args: tuple, output: torch.Tensor) -> None:
        seen[id(module)] = (args[0], output)

    hooks = [norm.register_forward_hook(record) for norm in resblock_norms(unet) + spatial_norms(unet)]
    try:
        with inject(unet, mm) as handle:
            handle.set_frames(frames)
            run_unet(unet, groups * frames)
            assert not any("forward" in module.__dict__ for module in mm.modules())
    finally:
        for hook in hooks:
            hook.remove()
    for norm in resblock_norms(unet):
        x, y = seen[id(norm)]
        assert x.shape[0] == groups * frames
        expected = group_norm_float64(x, norm, frames)
        assert torch.allclose(y.double(), expected, atol=1e-5), norm
        if frames > 1:
            per_frame = group_norm_float64(x, norm, 1)
            assert not torch.allclose(y.double(), per_frame, atol=1e-3)
    for norm in spatial_norms(unet):
        x, y = seen[id(norm)]
        assert "forward" not in norm.__dict__
        assert torch.allclose(
            y, nn.functional.group_norm(x, norm.num_groups, norm.weight, norm.bias, norm.eps)
        )


@pytest.mark.parametrize("kind", KINDS, ids="-".join)
def test_per_frame_variants_leave_the_unet_norms_alone(unets: dict, kind: tuple[str, str]) -> None:
    unet = unets[kind]
    with inject(unet, mm_of(VARIANT_FOR[kind[1]])):
        assert all("forward" not in norm.__dict__ for norm in resblock_norms(unet))
