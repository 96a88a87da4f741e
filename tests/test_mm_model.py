"""The temporal transformer against a float64 reference written out by hand from reference 2.11."""

from __future__ import annotations

import math

import pytest
import torch

from motion_module import MotionModuleError, TemporalTransformer
from motion_module import model as mm_model
from motion_module.model import MotionModule, sinusoid_table
from tests.fixtures.mm_checkpoints import layer_tensors, random_tensor, sinusoid

HEADS = 8


def group_norm(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, groups: int = 32) -> torch.Tensor:
    """GroupNorm of each image of ``x`` (N, C, H, W) on its own, eps 1e-6."""
    n, c, h, w = x.shape
    grouped = x.reshape(n, groups, -1)
    mean = grouped.mean(-1, keepdim=True)
    var = ((grouped - mean) ** 2).mean(-1, keepdim=True)
    normed = ((grouped - mean) / torch.sqrt(var + 1e-6)).reshape(n, c, h, w)
    return normed * weight[None, :, None, None] + bias[None, :, None, None]


def layer_norm(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    mean = x.mean(-1, keepdim=True)
    var = ((x - mean) ** 2).mean(-1, keepdim=True)
    return (x - mean) / torch.sqrt(var + 1e-5) * weight + bias


def reference_layer(x: torch.Tensor, frames: int, w: dict[str, torch.Tensor]) -> torch.Tensor:
    """The SD1.5 temporal layer in float64, loop-free but without any of the model's code."""
    batch, c, h, width = x.shape
    groups, d = batch // frames, c // HEADS
    t = group_norm(x, w["norm.weight"], w["norm.bias"])
    t = t.permute(0, 2, 3, 1).reshape(batch, h * width, c) @ w["proj_in.weight"].T + w["proj_in.bias"]
    block = "transformer_blocks.0"
    for n in (0, 1):
        a = f"{block}.attention_blocks.{n}"
        u = layer_norm(t, w[f"{block}.norms.{n}.weight"], w[f"{block}.norms.{n}.bias"])
        u = u.reshape(groups, frames, h * width, c) + w[f"{a}.pos_encoder.pe"][0, :frames, None, :]
        q, k, v = (
            (u @ w[f"{a}.{p}.weight"].T).reshape(groups, frames, h * width, HEADS, d)
            for p in ("to_q", "to_k", "to_v")
        )
        scores = torch.einsum("gfphd,gephd->gphfe", q, k) / math.sqrt(d)
        out = torch.einsum("gphfe,gephd->gfphd", scores.softmax(-1), v).reshape(batch, h * width, c)
        t = t + out @ w[f"{a}.to_out.0.weight"].T + w[f"{a}.to_out.0.bias"]
    u = layer_norm(t, w[f"{block}.ff_norm.weight"], w[f"{block}.ff_norm.bias"])
    value, gate = (u @ w[f"{block}.ff.net.0.proj.weight"].T + w[f"{block}.ff.net.0.proj.bias"]).chunk(2, -1)
    gelu = 0.5 * gate * (1 + torch.erf(gate / math.sqrt(2)))
    t = t + (value * gelu) @ w[f"{block}.ff.net.2.weight"].T + w[f"{block}.ff.net.2.bias"]
    t = t @ w["proj_out.weight"].T + w["proj_out.bias"]
    return x + t.reshape(batch, h, width, c).permute(0, 3, 1, 2)


def random_layer_weights(channels: int, pe_length: int, seed: int) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {
        name: sinusoid(shape[1], channels).clone()
        if name.endswith(".pe")
        else random_tensor(name, shape, generator)
        for name, shape in layer_tensors(channels, pe_length).items()
    }


@pytest.mark.parametrize(("channels", "frames", "groups"), [(32, 4, 2), (64, 5, 1), (32, 1, 3)])
def test_layer_matches_float64_reference(channels: int, frames: int, groups: int) -> None:
    weights = random_layer_weights(channels, 8, seed=channels + frames)
    layer = TemporalTransformer(channels, pe_length=8).double()
    layer.load_state_dict(weights)
    x = torch.randn(
        groups * frames, channels, 3, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(1)
    )
    expected = reference_layer(x, frames, weights)
    assert torch.allclose(layer(x, frames), expected, rtol=1e-10, atol=1e-10)
    assert (expected - x).abs().max() > 0.1  # the layer really contributes


def test_float32_layer_close_to_float64_reference() -> None:
    weights = random_layer_weights(32, 24, seed=5)
    layer = TemporalTransformer(32, pe_length=24)
    layer.load_state_dict({name: value.float() for name, value in weights.items()})
    x = torch.randn(16, 32, 4, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    expected = reference_layer(x, 8, weights)
    assert torch.allclose(layer(x.float(), 8).double(), expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("limit", [1, 7, 29, 30])
def test_attention_batch_chunked_below_the_limit(limit: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """groups x pixels = 2 x 15 = 30 sequences: each limit below 30 splits the attention calls
    (the last chunk partial for 7 and 29; 30 is one call) and gives the unchunked and float64 results."""
    weights = random_layer_weights(32, 8, seed=11)
    layer = TemporalTransformer(32, pe_length=8).double()
    layer.load_state_dict(weights)
    x = torch.randn(2 * 6, 32, 3, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    whole = layer(x, 6)
    batches: list[int] = []
    sdpa = torch.nn.functional.scaled_dot_product_attention

    def counting_sdpa(query: torch.Tensor, *args: torch.Tensor) -> torch.Tensor:
        batches.append(query.shape[0])
        return sdpa(query, *args)

    monkeypatch.setattr(mm_model, "SDPA_MAX_BATCH", limit)
    monkeypatch.setattr(mm_model.F, "scaled_dot_product_attention", counting_sdpa)
    chunked = layer(x, 6)
    calls_per_attention = -(-30 // limit)
    assert batches == ([limit] * (30 // limit) + ([30 % limit] if 30 % limit else [])) * 2
    assert len(batches) == 2 * calls_per_attention  # two attention blocks
    torch.testing.assert_close(chunked, whole, rtol=0, atol=1e-12)
    torch.testing.assert_close(chunked, reference_layer(x, 6, weights), rtol=1e-10, atol=1e-10)


def test_groups_do_not_see_each_other() -> None:
    layer = TemporalTransformer(32, pe_length=8)
    layer.load_state_dict({k: v.float() for k, v in random_layer_weights(32, 8, seed=3).items()})
    x = torch.randn(8, 32, 2, 2)
    both = layer(x, 4)
    assert torch.allclose(both[:4], layer(x[:4], 4), atol=1e-6)
    assert torch.allclose(both[4:], layer(x[4:], 4), atol=1e-6)


def test_positional_encoding_formula() -> None:
    assert torch.allclose(sinusoid_table(24, 64), sinusoid(24, 64).float(), rtol=0, atol=1e-6)


def test_too_many_frames_and_ragged_batches_are_rejected() -> None:
    layer = TemporalTransformer(32, pe_length=4)
    with pytest.raises(MotionModuleError, match=r"num_frames=5 .*positional encoding \(4\)"):
        layer(torch.zeros(5, 32, 2, 2), 5)
    with pytest.raises(MotionModuleError, match="num_frames=3"):
        layer(torch.zeros(4, 32, 2, 2), 3)


def test_channels_must_fit_heads_and_groups() -> None:
    with pytest.raises(MotionModuleError, match="channels=48"):
        TemporalTransformer(48, pe_length=4)


def test_module_structure_and_attributes() -> None:
    mm = MotionModule("v2", (32, 64, 128, 128), has_mid_block=True)
    assert [len(level) for level in mm.down_layers] == [2, 2, 2, 2]
    assert [len(level) for level in mm.up_layers] == [3, 3, 3, 3]
    assert [level[0].temporal_transformer.norm.num_channels for level in mm.up_layers] == [128, 128, 64, 32]
    assert mm.mid_layer is mm.mid_block.motion_modules[0]
    assert (mm.family, mm.pe_length, mm.cross_frame_groupnorm, mm.beta_schedule.kind) == (
        "sd15",
        32,
        False,
        "linear",
    )
    lcm = MotionModule("animatelcm", (32, 32, 32, 32), has_mid_block=True, pe_in_state_dict=False)
    assert lcm.pe_length == 64 and not any("pos_encoder" in key for key in lcm.state_dict())
    xl = MotionModule("sdxl", (32, 64, 128), has_mid_block=False)
    assert (
        xl.mid_layer is None
        and xl.beta_schedule.kind == "scaled_linear"
        and xl.beta_schedule.beta_end == 0.020
    )
    with pytest.raises(MotionModuleError, match="variant='v9'"):
        MotionModule("v9", (32,), has_mid_block=False)
