"""Parity of our injected UNets with diffusers' ``UNetMotionModel`` (the independent reference).

The same random weights run in both: a seeded ldm UNet, its diffusers twin (weights converted by
diffusers' ``convert_ldm_unet_checkpoint``; our injection is checked on both), and the motion-module weights converted to
``MotionAdapter`` keys by diffusers' ``convert_animatediff_checkpoint_to_diffusers``.

One deliberate change to the reference: diffusers' ``AnimateDiffTransformer3D`` applies its input
GroupNorm to the 5-D ``(batch, channels, frames, h, w)`` tensor, i.e. across frames, while the
original AnimateDiff SD1.5 motion module (and ours) normalises each frame on its own. The test
swaps that one norm for a per-frame GroupNorm with the same weights, so both sides compute the
original's per-frame norm; everything else in diffusers runs unchanged.
"""

from __future__ import annotations

import pytest
import torch
from diffusers import MotionAdapter, UNetMotionModel
from diffusers.loaders.single_file_utils import convert_animatediff_checkpoint_to_diffusers
from diffusers.models.unets.unet_motion_model import AnimateDiffTransformer3D
from torch import nn

from motion_module import inject
from tests.fixtures.tiny_models import (
    diffusers_unet_from_ldm,
    tiny_ldm_unet,
    tiny_motion_module,
    unet_inputs,
)

pytestmark = pytest.mark.parity

LAYOUT_OF = {"v2": "sd15", "v3": "sd15", "sdxl": "sdxl"}
GROUPS, FRAMES = 2, 3
TOLERANCE = 1e-5


class PerFrameGroupNorm(nn.GroupNorm):
    """GroupNorm applied to each frame of a ``(B, C, F, H, W)`` tensor separately."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        frames = x.transpose(1, 2)
        return super().forward(frames.flatten(0, 1)).unflatten(0, frames.shape[:2]).transpose(1, 2)


def make_norms_per_frame(model: nn.Module) -> None:
    for module in model.modules():
        if isinstance(module, AnimateDiffTransformer3D):
            norm = PerFrameGroupNorm(module.norm.num_groups, module.norm.num_channels, eps=module.norm.eps)
            norm.load_state_dict(module.norm.state_dict())
            module.norm = norm


def diffusers_reference(unet2d: nn.Module, mm: nn.Module) -> UNetMotionModel:
    """``UNetMotionModel.from_unet2d`` with a ``MotionAdapter`` holding ``mm``'s weights."""
    adapter = MotionAdapter(
        block_out_channels=tuple(unet2d.config.block_out_channels),
        motion_layers_per_block=2,
        motion_num_attention_heads=8,
        motion_norm_num_groups=32,
        motion_max_seq_length=mm.pe_length,
        use_motion_mid_block=mm.has_mid_block,
    )
    converted = convert_animatediff_checkpoint_to_diffusers(mm.state_dict())
    missing, unexpected = adapter.load_state_dict(converted, strict=False)
    assert unexpected == []
    assert all(key.endswith("pos_embed.pe") for key in missing)
    model = UNetMotionModel.from_unet2d(unet2d, adapter).eval()
    make_norms_per_frame(model)
    return model


def relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    return ((actual - expected).norm() / expected.norm()).item()


@pytest.fixture(scope="module")
def unets() -> dict[str, tuple[nn.Module, nn.Module]]:
    """Per layout: a seeded ldm UNet and its diffusers twin (same weights, diffusers' converter)."""
    pairs = {}
    for layout in ("sd15", "sdxl"):
        ldm_unet = tiny_ldm_unet(layout, seed=4)
        pairs[layout] = (ldm_unet, diffusers_unet_from_ldm(ldm_unet, layout))
    return pairs


@pytest.fixture(scope="module")
def references(unets: dict) -> dict[str, tuple[nn.Module, UNetMotionModel]]:
    """Per variant: the motion module and the diffusers reference built from the same weights."""
    built = {}
    for variant, layout in LAYOUT_OF.items():
        mm = tiny_motion_module(variant, seed=3)
        built[variant] = (mm, diffusers_reference(unets[layout][1], mm))
    return built


@pytest.mark.parametrize("unet_kind", ["diffusers", "ldm"])
@pytest.mark.parametrize("variant", sorted(LAYOUT_OF))
def test_injected_unet_matches_diffusers_unet_motion_model(
    unets: dict, references: dict, unet_kind: str, variant: str
) -> None:
    mm, reference = references[variant]
    assert not mm.cross_frame_groupnorm
    ldm_unet, unet2d = unets[LAYOUT_OF[variant]]
    latents, timesteps, context = unet_inputs(GROUPS * FRAMES, seed=5)
    timesteps = timesteps[::FRAMES].repeat_interleave(FRAMES)
    with torch.no_grad():
        video = latents.unflatten(0, (GROUPS, FRAMES)).transpose(1, 2)
        expected = reference(video, timesteps[::FRAMES], encoder_hidden_states=context).sample
        expected = expected.transpose(1, 2).flatten(0, 1)
        plain = unet2d(latents, timesteps, encoder_hidden_states=context).sample
        if unet_kind == "ldm":
            with inject(ldm_unet, mm) as handle:
                handle.set_frames(FRAMES)
                actual = ldm_unet(latents, timesteps, context=context)
        else:
            with inject(unet2d, mm) as handle:
                handle.set_frames(FRAMES)
                actual = unet2d(latents, timesteps, encoder_hidden_states=context).sample
    assert relative_error(actual, expected) <= TOLERANCE
    assert relative_error(plain, expected) > 100 * TOLERANCE
