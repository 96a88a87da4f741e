"""Key namings, variant detection and layout checks (reference 3.1-3.3)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from motion_module import MotionModuleError
from motion_module.formats import check_against, detect_layout, normalize_keys
from motion_module.model import MotionModule
from motion_module.variants import VARIANTS
from tests.fixtures.mm_checkpoints import (
    DETECTED_AS,
    LAYOUTS,
    REAL_SD15_CHANNELS,
    REAL_SDXL_CHANNELS,
    layer_prefixes,
    layer_tensors,
    make_state_dict,
)

SMALL = {False: (32, 32, 32, 32), True: (32, 32, 32)}
NAMINGS = [
    (variant, naming)
    for variant, (is_sdxl, _, _) in LAYOUTS.items()
    for naming in ("original", "diffusers", "hotshot")
    if naming != "hotshot" or is_sdxl
]


def small_state_dict(variant: str, naming: str = "original") -> dict[str, torch.Tensor]:
    return make_state_dict(variant, channels=SMALL[LAYOUTS[variant][0]], naming=naming)


def real_shapes(variant: str) -> dict[str, tuple[int, ...]]:
    is_sdxl, _, pe_length = LAYOUTS[variant]
    channels = REAL_SDXL_CHANNELS if is_sdxl else REAL_SD15_CHANNELS
    return {
        f"{prefix}.temporal_transformer.{name}": shape
        for prefix, c in layer_prefixes(variant, channels)
        for name, shape in layer_tensors(c, pe_length).items()
    }


REFERENCE_COUNTS = [
    ("v1", 560, 40, 417.138),
    ("v2", 588, 42, 453.209),
    ("v3", 560, 40, 417.138),
    ("animatelcm", 546, 0, 453.209),
    ("sdxl", 420, 30, 236.779),
    ("hotshotxl", 420, 30, 236.779),
]


@pytest.mark.parametrize(("variant", "keys", "pe_keys", "millions"), REFERENCE_COUNTS)
def test_factory_layout_matches_the_reference_counts(
    variant: str, keys: int, pe_keys: int, millions: float
) -> None:
    shapes = real_shapes(variant)
    assert len(shapes) == keys
    assert sum(key.endswith(".pe") for key in shapes) == pe_keys
    weights = sum(torch.Size(shape).numel() for key, shape in shapes.items() if not key.endswith(".pe"))
    assert round(weights / 1e6, 3) == millions


@pytest.mark.parametrize("variant", ["v1", "v2", "animatelcm", "sdxl"])
def test_model_state_dict_has_the_real_keys_and_shapes(variant: str) -> None:
    is_sdxl, has_mid, pe_length = LAYOUTS[variant]
    with torch.device("meta"):
        mm = MotionModule(
            variant,
            REAL_SDXL_CHANNELS if is_sdxl else REAL_SD15_CHANNELS,
            has_mid_block=has_mid,
            pe_in_state_dict=pe_length is not None,
        )
    assert {key: tuple(value.shape) for key, value in mm.state_dict().items()} == real_shapes(variant)


def test_diffusers_naming_has_one_pe_per_layer() -> None:
    state = small_state_dict("v2", "diffusers")
    assert len(state) == 567
    assert sum(key.endswith("pos_embed.pe") for key in state) == 21
    assert not any("temporal_transformer" in key for key in state)


@pytest.mark.parametrize(("variant", "naming"), NAMINGS)
def test_every_variant_is_detected_in_every_naming(variant: str, naming: str) -> None:
    is_sdxl, has_mid, pe_length = LAYOUTS[variant]
    normalized, detected_naming = normalize_keys(small_state_dict(variant, naming))
    layout = detect_layout(normalized, detected_naming, "test.safetensors")
    expected_variant = DETECTED_AS.get(variant, variant)
    assert (layout.variant, layout.naming) == (expected_variant, naming)
    assert layout.down_channels == SMALL[is_sdxl]
    assert (layout.has_mid_block, layout.pe_length, layout.num_attention_blocks) == (has_mid, pe_length, 2)
    assert VARIANTS[expected_variant].family == ("sdxl" if is_sdxl else "sd15")


@pytest.mark.parametrize(
    ("variant", "naming"), [("v2", "diffusers"), ("hotshotxl", "hotshot"), ("v1", "diffusers")]
)
def test_other_namings_normalise_to_the_original_keys_and_values(variant: str, naming: str) -> None:
    normalized, _ = normalize_keys(small_state_dict(variant, naming))
    original = small_state_dict(variant)
    assert set(normalized) == set(original)
    assert all(torch.equal(normalized[key], original[key]) for key in original)


def test_variant_facts() -> None:
    expected = {
        "v1": ("sd15", 24, True, "linear", 0.012),
        "v2": ("sd15", 32, False, "linear", 0.012),
        "v3": ("sd15", 32, False, "linear", 0.012),
        "animatelcm": ("sd15", 64, False, "linear", 0.012),
        "sdxl": ("sdxl", 32, False, "scaled_linear", 0.020),
        "hotshotxl": ("sdxl", 24, True, "linear", 0.012),
    }
    actual = {
        name: (v.family, v.pe_length, v.cross_frame_groupnorm, v.beta_schedule.kind, v.beta_schedule.beta_end)
        for name, v in VARIANTS.items()
    }
    assert actual == expected
    assert {v.beta_schedule.beta_start for v in VARIANTS.values()} == {0.00085}


def detect(state: dict[str, torch.Tensor]) -> None:
    normalized, naming = normalize_keys(state)
    detect_layout(normalized, naming, "bad.safetensors")


LAYER0 = "down_blocks.0.motion_modules.0.temporal_transformer"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda s: s.update({"conv_in.weight": torch.zeros(320, 9, 3, 3)}), "PIA input convolution"),
        (lambda s: s.update({"img_encoder.x.weight": torch.zeros(1)}), "AnimateLCM-I2V"),
        (
            lambda s: s.update({"model.diffusion_model.x": torch.zeros(1)}),
            "unexpected keys .*model.diffusion_model.x",
        ),
        (lambda s: [s.pop(k) for k in list(s) if k.startswith("down_blocks.2")], r"levels \[0, 1, 3\]"),
        (lambda s: [s.pop(k) for k in list(s) if k.startswith("down_blocks.")], r"levels \[\]"),
        (lambda s: s.pop(f"{LAYER0}.norm.weight"), "missing key down_blocks.0.*norm.weight"),
        (
            lambda s: s.update(
                {f"{LAYER0}.transformer_blocks.0.attention_blocks.0.pos_encoder.pe": torch.zeros(1, 16, 32)}
            ),
            r"different lengths \[16, 32\]",
        ),
        (lambda s: [s.pop(k) for k in list(s) if "attention_blocks" in k], "no attention blocks"),
    ],
)
def test_detection_rejections(change: Callable[[dict], object], message: str) -> None:
    state = small_state_dict("v2")
    change(state)
    with pytest.raises(MotionModuleError, match=f"bad.safetensors: .*{message}"):
        detect(state)


@pytest.mark.parametrize(
    ("variant", "drop", "message"),
    [
        ("v3", ".pos_encoder.pe", "SD1.5 module without a mid block or positional encoding"),
        ("sdxl", ".pos_encoder.pe", "SDXL module without positional encoding"),
    ],
)
def test_undecidable_layouts_are_rejected(variant: str, drop: str, message: str) -> None:
    state = {k: v for k, v in small_state_dict(variant).items() if not k.endswith(drop)}
    with pytest.raises(MotionModuleError, match=message):
        detect(state)


def test_sdxl_with_mid_block_is_rejected() -> None:
    state = small_state_dict("sdxl")
    state |= {
        k.replace("down_blocks.2.motion_modules.0", "mid_block.motion_modules.0"): v
        for k, v in state.items()
        if k.startswith("down_blocks.2.motion_modules.0.")
    }
    with pytest.raises(MotionModuleError, match="SDXL module with a mid block"):
        detect(state)


def expected_shapes(variant: str) -> dict[str, torch.Size]:
    _, has_mid, pe_length = LAYOUTS[variant]
    with torch.device("meta"):
        mm = MotionModule(
            variant, SMALL[False], has_mid_block=has_mid, pe_in_state_dict=pe_length is not None
        )
    return {key: value.shape for key, value in mm.state_dict().items()}


def test_check_against_names_missing_and_unexpected_keys() -> None:
    state = small_state_dict("v3")
    state.pop(f"{LAYER0}.proj_out.bias")
    state[f"{LAYER0}.proj_out.scale"] = torch.zeros(32)
    with pytest.raises(
        MotionModuleError, match=r"f.safetensors: .*missing .*proj_out\.bias; unexpected .*proj_out\.scale"
    ):
        check_against(state, expected_shapes("v3"), "f.safetensors")


def test_check_against_spots_transposed_tensors() -> None:
    state = small_state_dict("v3")
    key = f"{LAYER0}.transformer_blocks.0.ff.net.2.weight"
    state[key] = state[key].T
    with pytest.raises(
        MotionModuleError,
        match=r"ff\.net\.2\.weight has shape \[128, 32\], expected \[32, 128\] \(transposed\?\)",
    ):
        check_against(state, expected_shapes("v3"), "f.safetensors")


def test_check_against_accepts_the_real_layout() -> None:
    check_against(small_state_dict("v3"), expected_shapes("v3"), "f.safetensors")
