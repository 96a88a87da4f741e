"""LoRA merging: W += s * scale * up @ down, stacking, bit-identical removal, original / A1111-network /
peft naming, conv-shaped factors, the v3 adapter on the ldm UNet (vs diffusers), classification, rejections."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch

from motion_module import MotionModuleError, apply_motion_lora
from motion_module.lora import apply_lora, lora_kind, read_lora
from tests.fixtures.lora_checkpoints import make_adapter_lora, merge_by_hand, to_network_naming
from tests.fixtures.mm_checkpoints import make_motion_lora, make_motion_module, write_checkpoint
from tests.fixtures.tiny_models import diffusers_unet_from_ldm, tiny_ldm_unet, unet_inputs

SMALL = (32, 32, 32, 32)
TARGET = (
    "mid_block.motion_modules.0.temporal_transformer.transformer_blocks.0.attention_blocks.1.to_out.0.weight"
)
LORA_KEY = "mid_block.motion_modules.0.temporal_transformer.transformer_blocks.0.attention_blocks.1.processor.to_out_lora"


@pytest.fixture(scope="module")
def template() -> torch.nn.Module:
    return make_motion_module("v2", channels=SMALL)


@pytest.fixture(scope="module")
def pristine(template: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in template.state_dict().items()}


@pytest.fixture
def mm(template: torch.nn.Module, pristine: dict) -> Iterator[torch.nn.Module]:
    """The shared module; every test must leave it as it found it, which is checked here."""
    yield template
    assert_state(template, pristine)


def lora(seed: int = 0, **kwargs: object) -> dict[str, torch.Tensor]:
    return make_motion_lora("v2", channels=SMALL, seed=seed, **kwargs)


def snapshot(mm: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {key: value.clone() for key, value in mm.state_dict().items()}


def assert_state(mm: torch.nn.Module, expected: dict[str, torch.Tensor]) -> None:
    state = mm.state_dict()
    assert all(torch.equal(state[key], expected[key]) for key in expected)


def test_update_is_strength_times_up_at_down(mm: torch.nn.Module, pristine: dict) -> None:
    factors = lora()
    handle = apply_motion_lora(mm, factors, 0.7)
    state = snapshot(mm)
    handle.remove()
    up, down = factors[f"{LORA_KEY}.up.weight"].double(), factors[f"{LORA_KEY}.down.weight"].double()
    expected = pristine[TARGET].double() + 0.7 * up @ down
    assert torch.allclose(state[TARGET].double(), expected, atol=1e-6)
    changed = {key for key in pristine if not torch.equal(state[key], pristine[key])}
    assert len(changed) == 21 * 2 * 4
    assert all(".attention_blocks." in key and key.endswith(".weight") for key in changed)


def test_stacked_loras_remove_bit_identically_in_any_order(mm: torch.nn.Module, pristine: dict) -> None:
    first = apply_motion_lora(mm, lora(1), 0.8)
    second = apply_motion_lora(mm, lora(2), -0.5)
    assert first.active and second.active
    first.remove()
    assert not first.active and second.active
    without_first = snapshot(mm)
    second.remove()
    second.remove()
    assert_state(mm, pristine)
    only_second = apply_motion_lora(mm, lora(2), -0.5)
    assert_state(mm, without_first)
    only_second.remove()


def test_lifo_removal_and_reapplication(mm: torch.nn.Module, pristine: dict) -> None:
    handles = [apply_motion_lora(mm, lora(seed), 1.0) for seed in range(3)]
    for handle in reversed(handles):
        handle.remove()
    assert_state(mm, pristine)
    apply_motion_lora(mm, lora(0), 1.0).remove()


def test_peft_naming_and_files_give_the_same_weights(mm: torch.nn.Module, tmp_path: Path) -> None:
    handle = apply_motion_lora(mm, lora(3), 0.6)
    via_original = snapshot(mm)
    handle.remove()
    path = write_checkpoint(tmp_path / "peft.safetensors", lora(3, naming="peft"))
    handle = apply_motion_lora(mm, path, 0.6)
    assert_state(mm, via_original)
    handle.remove()


def test_fp16_module_gets_the_update_in_its_dtype(mm: torch.nn.Module) -> None:
    half = copy.deepcopy(mm).half()
    before = {k: v.clone() for k, v in half.state_dict().items()}
    handle = apply_motion_lora(half, lora(), 1.0)
    assert half.state_dict()[TARGET].dtype == torch.float16
    assert not torch.equal(half.state_dict()[TARGET], before[TARGET])
    handle.remove()
    assert_state(half, before)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda s: s.update({f"{LORA_KEY}.mid.weight": torch.ones(4, 4)}),
            f"not LoRA keys: {LORA_KEY}.mid.weight",
        ),
        (
            lambda s: s.update({"lora_unet_foo.alpha": torch.ones(())}),
            r"1 LoRA keys do not match this 'v2' motion module, e\.g\. lora_unet_foo\.alpha",
        ),
        (lambda s: s.pop(f"{LORA_KEY}.up.weight"), "lacks its up matrix"),
        (
            lambda s: s.update({f"{LORA_KEY}.up.weight": torch.zeros(16, 4)}),
            r"up \[16, 4\] and down \[4, 32\]",
        ),
        (lambda s: s.update({f"{LORA_KEY}.down.weight": torch.full((4, 32), float("nan"))}), "NaN or Inf"),
    ],
)
def test_bad_loras_are_rejected_before_any_change(
    mm: torch.nn.Module, pristine: dict, change: Callable[[dict], object], message: str
) -> None:
    factors = lora()
    change(factors)
    with pytest.raises(MotionModuleError, match=message):
        apply_motion_lora(mm, factors, 1.0)
    assert_state(mm, pristine)


def test_lora_for_another_layout_is_rejected() -> None:
    v3 = make_motion_module("v3", channels=SMALL)
    before = {k: v.clone() for k, v in v3.state_dict().items()}
    with pytest.raises(
        MotionModuleError, match=r"16 LoRA keys do not match this 'v3' motion module, e\.g\. mid_block"
    ):
        apply_motion_lora(v3, lora(), 1.0)
    assert_state(v3, before)


@pytest.mark.parametrize("strength", [float("nan"), float("inf"), "1", True])
def test_bad_strength(mm: torch.nn.Module, strength: object) -> None:
    with pytest.raises(MotionModuleError, match="strength="):
        apply_motion_lora(mm, lora(), strength)


# ---- A1111 network naming, conv-shaped factors, the v3 adapter on the ldm UNet, classification ----


def underscore_targets(state: dict[str, torch.Tensor]) -> dict[str, str]:
    return {key.removesuffix(".weight").replace(".", "_"): key for key in state if key.endswith(".weight")}


@pytest.mark.parametrize(("prefix", "alpha"), [("", None), ("", 2.0), ("lora_unet_", 3.0)])
def test_network_naming_adds_strength_times_alpha_over_rank(
    mm: torch.nn.Module, pristine: dict, prefix: str, alpha: float | None
) -> None:
    network = to_network_naming(lora(5), alpha=alpha, prefix=prefix)
    handle = apply_motion_lora(mm, network, 0.7)
    state = snapshot(mm)
    handle.remove()
    targets = underscore_targets(pristine)
    expected = {key: value.double() for key, value in pristine.items()}
    for key, down in network.items():
        if key.endswith(".lora_down.weight"):
            stem = key.removesuffix(".lora_down.weight")
            up = network[f"{stem}.lora_up.weight"].double()
            scale = network[f"{stem}.alpha"].item() / down.shape[0] if alpha else 1.0
            expected[targets[stem.removeprefix(prefix)]] += 0.7 * scale * up @ down.double()
    assert all(torch.allclose(state[key].double(), expected[key], atol=1e-6) for key in expected)
    assert sum(not torch.equal(state[key], pristine[key]) for key in pristine) == 21 * 2 * 4


def test_network_and_original_files_make_the_same_update(mm: torch.nn.Module, tmp_path: Path) -> None:
    handle = apply_motion_lora(mm, lora(6), -0.4)
    via_original = snapshot(mm)
    handle.remove()
    path = write_checkpoint(tmp_path / "net.safetensors", to_network_naming(lora(6), alpha=2.0))
    handle = apply_motion_lora(mm, path, -0.4)
    via_network = snapshot(mm)
    handle.remove()
    assert all(torch.allclose(via_network[k], via_original[k], atol=1e-6) for k in via_original)


def test_conv_shaped_factors_on_linear_layers_are_flattened(mm: torch.nn.Module) -> None:
    flat = to_network_naming(lora(7))
    handle = apply_motion_lora(mm, flat, 1.0)
    expected = snapshot(mm)
    handle.remove()
    conv_shaped = {key: value[:, :, None, None] if ".lora_" in key else value for key, value in flat.items()}
    handle = apply_motion_lora(mm, conv_shaped, 1.0)
    assert_state(mm, expected)
    handle.remove()


def test_v2_network_lora_on_a_v3_module_names_the_mid_block() -> None:
    v3 = make_motion_module("v3", channels=SMALL)
    before = {k: v.clone() for k, v in v3.state_dict().items()}
    with pytest.raises(
        MotionModuleError, match=r"16 LoRA keys do not match this 'v3' motion module, e\.g\. mid_block_"
    ):
        apply_motion_lora(v3, to_network_naming(lora(), prefix=""), 1.0)
    assert_state(v3, before)


@pytest.fixture(scope="module")
def ldm_and_twin() -> tuple[torch.nn.Module, torch.nn.Module]:
    unet = tiny_ldm_unet("sd15", seed=4)
    return unet, diffusers_unet_from_ldm(unet, "sd15")


def test_adapter_on_the_ldm_unet_matches_diffusers_merged_by_hand(ldm_and_twin: tuple) -> None:
    unet, twin = ldm_and_twin
    adapter = make_adapter_lora(twin, seed=2)
    assert len(adapter) == 16 * 2 * 4 * 2  # SD1.5: 16 transformer blocks x attn1/2 x q,k,v,out x down/up
    assert lora_kind(adapter) == "unet"
    before = {k: v.clone() for k, v in unet.state_dict().items()}
    merged_twin = copy.deepcopy(twin)
    merged_twin.load_state_dict(merge_by_hand(twin.state_dict(), [(adapter, 0.9)]))
    latents, timesteps, context = unet_inputs(2)
    handle = apply_lora(read_lora(unet, adapter, "unet"), 0.9)
    with torch.no_grad():
        ours = unet(latents, timesteps, context=context)
        reference = merged_twin(latents, timesteps, encoder_hidden_states=context).sample
        plain = twin(latents, timesteps, encoder_hidden_states=context).sample
    handle.remove()
    assert_state(unet, before)
    assert torch.allclose(ours, reference, atol=1e-4)
    assert (ours - plain).abs().max() > 100 * (ours - reference).abs().max()


def test_conv_1x1_factors_reach_the_ldm_proj_in(ldm_and_twin: tuple) -> None:
    unet, _ = ldm_and_twin
    weight = unet.input_blocks[1][1].proj_in.weight
    assert weight.shape[2:] == (1, 1)
    down, up = torch.randn(2, weight.shape[1], 1, 1), torch.randn(weight.shape[0], 2, 1, 1)
    factors = {
        "down_blocks.0.attentions.0.proj_in.lora_A.weight": down,
        "down_blocks.0.attentions.0.proj_in.lora_B.weight": up,
    }
    expected = (
        weight.detach().double() + 0.5 * (up.double().flatten(1) @ down.double().flatten(1))[:, :, None, None]
    )
    original = weight.detach().clone()
    handle = apply_lora(read_lora(unet, factors, "unet"), 0.5)
    assert torch.allclose(weight.detach().double(), expected, atol=1e-6)
    handle.remove()
    assert torch.equal(weight.detach(), original)


@pytest.mark.parametrize(
    ("keys", "kind"),
    [
        (list(make_motion_lora("v2", channels=SMALL)), "motion"),
        (
            list(to_network_naming(make_motion_lora("v2", channels=SMALL), alpha=4.0, prefix="lora_unet_")),
            "motion",
        ),
        (list(make_motion_lora("v2", channels=SMALL, naming="peft")), "motion"),
        (["down_blocks.1.attentions.0.transformer_blocks.0.attn2.processor.to_k_lora.up.weight"], "unet"),
        (["unet.up_blocks.1.attentions.2.transformer_blocks.0.attn1.to_out.0.lora_A.weight"], "unet"),
        (["lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q.lora_down.weight"], None),
        (["lora_te_text_model_encoder_layers_0_self_attn_q_proj.lora_up.weight"], None),
        (
            [
                "down_blocks.0.attentions.0.transformer_blocks.0.attn1.processor.to_q_lora.down.weight",
                "text_encoder.x.lora_A.weight",
            ],
            None,
        ),
        (["down_blocks.0.resnets.0.conv1.lora_A.weight"], None),
        (["foo.bias", "mid_block.motion_modules.0.temporal_transformer.proj_in.lora_A.weight"], "motion"),
        ([], None),
    ],
)
def test_lora_kind_from_keys(keys: list[str], kind: str | None) -> None:
    assert lora_kind(keys) == kind
