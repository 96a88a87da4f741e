"""Motion LoRA: W += s * up @ down, stacking, bit-identical removal, naming variants, rejections."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch

from motion_module import MotionModuleError, apply_motion_lora
from tests.fixtures.mm_checkpoints import make_motion_lora, make_motion_module, write_checkpoint

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
            lambda s: s.update({"lora_unet_foo.alpha": torch.ones(1)}),
            "not motion-LoRA keys: lora_unet_foo.alpha",
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
