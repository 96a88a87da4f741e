"""Checkpoint key namings and variant detection (reference sections 3.1-3.3).

Three namings reach us: the original AnimateDiff one (``…motion_modules.j.temporal_transformer.…``),
diffusers' ``MotionAdapter`` one (``attn1``/``norm1``/``pos_embed``, no ``temporal_transformer``;
AnimateDiff-Lightning's ``_diffusers`` files) and HotShot-XL's native one
(``temporal_attentions.j.``, ``pos_encoder.positional_encoding``). :func:`normalize_keys` maps the
latter two onto the first; :func:`detect_layout` then reads the variant and the sizes off the keys
and :func:`check_against` compares them with what that layout must contain.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TypeVar

import torch

from motion_module.errors import MotionModuleError

Value = TypeVar("Value")

LAYER_PATTERN = re.compile(
    r"^(?P<block>down_blocks\.(?P<level>\d+)|mid_block|up_blocks\.\d+)\.motion_modules\.(?P<index>\d+)"
    r"\.temporal_transformer\.(?P<tensor>.+)$"
)
ATTENTION_PATTERN = re.compile(r"^transformer_blocks\.0\.attention_blocks\.(\d+)\.to_q\.weight$")
PE_SUFFIX = ".pos_encoder.pe"

DIFFUSERS_RENAMES = (
    (".attn1.", ".attention_blocks.0."),
    (".attn2.", ".attention_blocks.1."),
    (".norm1.", ".norms.0."),
    (".norm2.", ".norms.1."),
    (".norm3.", ".ff_norm."),
)
DIFFUSERS_LAYER = re.compile(r"^((?:down_blocks\.\d+|mid_block|up_blocks\.\d+)\.motion_modules\.\d+)\.")
HOTSHOT_LAYER = re.compile(r"\.temporal_attentions\.(\d+)\.")

EXTRA_FEATURES = {
    "conv_in.": "PIA input convolution",
    "img_encoder.": "AnimateLCM-I2V image encoder",
    "qkv_merge": "CameraCtrl pose merge",
    "cc_projection": "MotionCtrl camera projection",
    "controlnet_cond_embedding": "SparseCtrl condition encoder",
}


@dataclass(frozen=True)
class ModuleLayout:
    """What a state dict says about the module it belongs to."""

    variant: str
    down_channels: tuple[int, ...]
    has_mid_block: bool
    pe_length: int | None
    num_attention_blocks: int
    naming: str

    @property
    def pe_in_state_dict(self) -> bool:
        return self.pe_length is not None


def unwrap_tensors(raw: Mapping[str, object], source: str) -> dict[str, torch.Tensor]:
    """The tensors of a loaded checkpoint: unwraps ``state_dict`` and drops non-tensor entries."""
    nested = raw.get("state_dict")
    if isinstance(nested, Mapping):
        raw = nested
    tensors = {
        key: value for key, value in raw.items() if isinstance(key, str) and isinstance(value, torch.Tensor)
    }
    if not tensors:
        raise MotionModuleError(f"{source}: contains no tensors, so it is not a motion module")
    return tensors


def naming_of(keys: list[str]) -> str:
    """ "original", "hotshot" or "diffusers"."""
    if any(".temporal_attentions." in key for key in keys):
        return "hotshot"
    if not any(".temporal_transformer." in key for key in keys) and any(
        ".attn1." in key or ".norm1." in key or ".pos_embed." in key for key in keys
    ):
        return "diffusers"
    return "original"


def _from_hotshot(key: str) -> str:
    key = HOTSHOT_LAYER.sub(r".motion_modules.\1.temporal_transformer.", key)
    return key.replace(".pos_encoder.positional_encoding", PE_SUFFIX)


def _from_diffusers(key: str) -> list[str]:
    """One diffusers key as original keys (the shared ``pos_embed.pe`` feeds both attentions)."""
    key = DIFFUSERS_LAYER.sub(r"\1.temporal_transformer.", key, count=1)
    if key.endswith(".transformer_blocks.0.pos_embed.pe"):
        stem = key.removesuffix(".pos_embed.pe")
        return [f"{stem}.attention_blocks.{n}{PE_SUFFIX}" for n in (0, 1)]
    for old, new in DIFFUSERS_RENAMES:
        key = key.replace(old, new)
    return [key]


def normalize_keys(tensors: Mapping[str, Value]) -> tuple[dict[str, Value], str]:
    """The tensors (or any values keyed like them) under their original key names, and the naming
    they came in."""
    naming = naming_of(list(tensors))
    if naming == "hotshot":
        return {_from_hotshot(key): value for key, value in tensors.items()}, naming
    if naming == "diffusers":
        return {new: value for key, value in tensors.items() for new in _from_diffusers(key)}, naming
    return dict(tensors), naming


def _describe(keys: list[str], limit: int = 5) -> str:
    shown = ", ".join(sorted(keys)[:limit])
    return f"{len(keys)} keys, e.g. {shown}" if len(keys) > limit else shown


def _reject_foreign(keys: list[str], source: str) -> None:
    foreign = [key for key in keys if not LAYER_PATTERN.match(key)]
    if not foreign:
        return
    for marker, feature in EXTRA_FEATURES.items():
        if any(marker in key for key in foreign):
            raise MotionModuleError(f"{source}: holds a {feature} ({marker!r} keys), which is not supported")
    raise MotionModuleError(
        f"{source}: unexpected keys that are not motion-module layers: {_describe(foreign)}"
    )


def _variant(family: str, has_mid: bool, pe_length: int | None, source: str) -> str:
    if family == "sd15":
        if has_mid:
            return "v2" if pe_length is not None else "animatelcm"
        if pe_length is None:
            raise MotionModuleError(f"{source}: SD1.5 module without a mid block or positional encoding keys")
        return "v1" if pe_length == 24 else "v3"
    if has_mid:
        raise MotionModuleError(f"{source}: SDXL module with a mid block is not a known variant")
    if pe_length is None:
        raise MotionModuleError(f"{source}: SDXL module without positional encoding keys")
    return "hotshotxl" if pe_length == 24 else "sdxl"


def detect_layout(tensors: Mapping[str, torch.Tensor], naming: str, source: str) -> ModuleLayout:
    """Read variant, channels per level, mid block, PE length and attention count off normalised keys."""
    keys = list(tensors)
    _reject_foreign(keys, source)
    levels = sorted({int(m["level"]) for key in keys if (m := LAYER_PATTERN.match(key)) and m["level"]})
    if levels not in ([0, 1, 2, 3], [0, 1, 2]):
        raise MotionModuleError(
            f"{source}: down_blocks levels {levels} are neither SD1.5 (0-3) nor SDXL (0-2)"
        )
    family = "sd15" if len(levels) == 4 else "sdxl"
    down_channels = []
    for level in levels:
        key = f"down_blocks.{level}.motion_modules.0.temporal_transformer.norm.weight"
        if key not in tensors:
            raise MotionModuleError(f"{source}: missing key {key}")
        down_channels.append(int(tensors[key].shape[0]))
    has_mid = any(key.startswith("mid_block.") for key in keys)
    pe_lengths = {
        int(value.shape[1]) for key, value in tensors.items() if key.endswith(PE_SUFFIX) and value.dim() == 3
    }
    if len(pe_lengths) > 1:
        raise MotionModuleError(f"{source}: positional encodings of different lengths {sorted(pe_lengths)}")
    pe_length = pe_lengths.pop() if pe_lengths else None
    prefix = "down_blocks.0.motion_modules.0.temporal_transformer."
    attentions = sum(
        1 for key in keys if key.startswith(prefix) and ATTENTION_PATTERN.match(key[len(prefix) :])
    )
    if attentions == 0:
        raise MotionModuleError(f"{source}: no attention blocks found under {prefix}")
    return ModuleLayout(
        variant=_variant(family, has_mid, pe_length, source),
        down_channels=tuple(down_channels),
        has_mid_block=has_mid,
        pe_length=pe_length,
        num_attention_blocks=attentions,
        naming=naming,
    )


def check_against(
    tensors: Mapping[str, torch.Tensor], expected: Mapping[str, torch.Size], source: str
) -> None:
    """Reject missing or unexpected keys and tensors whose shape differs from the built module's."""
    missing = [key for key in expected if key not in tensors]
    unexpected = [key for key in tensors if key not in expected]
    if missing or unexpected:
        parts = [
            f"missing {_describe(missing)}" if missing else "",
            f"unexpected {_describe(unexpected)}" if unexpected else "",
        ]
        raise MotionModuleError(
            f"{source}: keys do not match the detected layout: {'; '.join(p for p in parts if p)}"
        )
    for key, shape in expected.items():
        actual = tensors[key].shape
        if actual != shape:
            hint = " (transposed?)" if tuple(actual) == tuple(reversed(shape)) else ""
            raise MotionModuleError(
                f"{source}: tensor {key} has shape {list(actual)}, expected {list(shape)}{hint}"
            )
