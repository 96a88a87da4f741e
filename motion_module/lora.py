"""LoRA merging for motion modules (motion LoRAs) and the image UNet (the v3 domain adapter).

A LoRA adds ``strength · scale · up @ down`` to a Linear or Conv weight; ``scale`` is
``alpha / rank`` when the file stores an ``alpha`` (A1111's rule), else 1. One parser reads every
naming that reaches us:

* original AnimateDiff: ``<module>.processor.{to_q,to_k,to_v,to_out}_lora.{down,up}.weight``
  (motion LoRAs ``v2_lora_*.ckpt`` and the v3 adapter ``v3_sd15_adapter.ckpt``);
* A1111 network: ``[lora_unet_]<module with "." as "_">.{lora_down,lora_up}.weight`` and ``.alpha``
  (the author's re-keyed motion LoRAs for A1111);
* peft / diffusers: ``[unet.]<module>.{lora_A,lora_B}.weight`` or ``.lora.{down,up}.weight``, with
  diffusers' motion-module names (``attn1``/``attn2``) accepted for motion LoRAs.

Motion LoRAs use the motion module's own names; adapter LoRAs (kind ``"unet"``) use diffusers'
UNet names, which are mapped onto the ldm ``UNetModel`` A1111 runs (``down_blocks.i.attentions.j``
→ ``input_blocks.(1+3i+j).1``, ``mid_block.attentions.0`` → ``middle_block.1``,
``up_blocks.i.attentions.j`` → ``output_blocks.(3i+j).1``).

Several LoRAs stack on one model. The first LoRA touching a weight stores a copy of it; removing a
LoRA puts the stored weights back and re-applies the LoRAs still active in their order, so removing
every LoRA leaves the model bit-identical to before, in any removal order.
"""

from __future__ import annotations

import math
import os
import re
import weakref
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import nn

from motion_module.checkpoint_io import from_state_dict, open_checkpoint
from motion_module.errors import MotionModuleError
from motion_module.formats import normalize_keys

Kind = Literal["motion", "unet"]

# key ending -> role; the original naming's "_lora.down.weight" never ends like ".lora.down.weight"
ROLE_SUFFIXES = (
    ("_lora.down.weight", "down"),
    ("_lora.up.weight", "up"),
    (".lora_down.weight", "down"),
    (".lora_up.weight", "up"),
    (".lora_A.weight", "down"),
    (".lora_B.weight", "up"),
    (".lora.down.weight", "down"),
    (".lora.up.weight", "up"),
    (".alpha", "alpha"),
)
STEM_PREFIXES = ("unet.", "lora_unet_")
MOTION_MARK = re.compile(r"(?:^|[._])motion_modules[._]\d")
UNET_ATTENTION = re.compile(
    r"^(?:down_blocks\.(?P<down>\d+)\.attentions\.(?P<down_index>\d+)"
    r"|(?P<mid>mid_block)\.attentions\.0"
    r"|up_blocks\.(?P<up>\d+)\.attentions\.(?P<up_index>\d+))\.(?P<rest>.+)$"
)


def split_key(key: str) -> tuple[str, str] | None:
    """``(module name as the file spells it, "down" | "up" | "alpha")``, or None for a non-LoRA key."""
    found = next(((suffix, role) for suffix, role in ROLE_SUFFIXES if key.endswith(suffix)), None)
    if found is None:
        return None
    stem, role = key[: -len(found[0])], found[1]
    for prefix in STEM_PREFIXES:
        stem = stem.removeprefix(prefix)
    stem = stem.replace(".processor.", ".")
    return (f"{stem}.0" if stem.endswith(".to_out") else stem), role


def ldm_name(diffusers_name: str) -> str | None:
    """The ldm ``UNetModel`` name of a module inside a diffusers UNet attention block, or None."""
    match = UNET_ATTENTION.match(diffusers_name)
    if match is None:
        return None
    if match["mid"]:
        block = "middle_block.1"
    elif match["down"] is not None:
        block = f"input_blocks.{1 + 3 * int(match['down']) + int(match['down_index'])}.1"
    else:
        block = f"output_blocks.{3 * int(match['up']) + int(match['up_index'])}.1"
    return f"{block}.{match['rest']}"


def lora_kind(keys: Iterable[str]) -> Kind | None:
    """What a LoRA file targets, judged from its keys alone: ``"motion"`` when any key names a
    motion-module layer, ``"unet"`` when every key is a dotted (original or peft) LoRA key on the
    image UNet's attention blocks (the v3 adapter's form), else None (an ordinary LoRA, A1111's)."""
    keys = list(keys)
    if any(MOTION_MARK.search(key) for key in keys):
        return "motion"
    parsed = [split_key(key) for key in keys]
    on_unet = all(item is not None and ldm_name(item[0]) is not None for item in parsed)
    return "unet" if parsed and on_unet else None


@dataclass(frozen=True)
class _Factor:
    """One target weight's low-rank pair and its ``alpha / rank`` scale."""

    weight: nn.Parameter
    up: torch.Tensor
    down: torch.Tensor
    scale: float

    def delta(self, dtype: torch.dtype) -> torch.Tensor:
        device = self.weight.device
        up = self.up.reshape(self.up.shape[0], -1).to(device, dtype)
        down = self.down.reshape(self.down.shape[0], -1).to(device, dtype)
        return (up @ down).reshape(self.weight.shape)


@dataclass(frozen=True)
class LoraWeights:
    """A LoRA checked against one model: target weight name -> factors. Nothing is changed yet."""

    source: str
    model: nn.Module
    factors: dict[str, _Factor]


def _weighted_modules(model: nn.Module) -> dict[str, str]:
    """Linear/Conv module names of ``model``, by dotted and by underscore spelling."""
    names = {}
    for name, module in model.named_modules():
        if isinstance(module, (nn.Linear, nn.Conv1d, nn.Conv2d)):
            names[name] = name
            names[name.replace(".", "_")] = name
    return names


def _fits(up: torch.Tensor, down: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether ``up @ down`` (A1111's flattening of conv factors) makes ``weight``'s shape."""
    if up.dim() not in (2, 4) or down.dim() not in (2, 4) or (up.dim() == 4 and up.shape[2:] != (1, 1)):
        return False
    if down.dim() == 4 and down.shape[2:] != weight.shape[2:] and down.shape[2:] != (1, 1):
        return False
    rank = down.shape[0]
    return (
        up.reshape(up.shape[0], -1).shape == (weight.shape[0], rank) and down[0].numel() == weight[0].numel()
    )


def _describe_model(model: nn.Module, kind: Kind) -> str:
    return f"this {getattr(model, 'variant', '?')!r} motion module" if kind == "motion" else "the image UNet"


def _factors(
    tensors: Mapping[str, torch.Tensor], model: nn.Module, kind: Kind, source: str
) -> dict[str, _Factor]:
    """Validate every key against ``model`` and pair the factors per target weight."""
    if kind == "motion":
        tensors, _ = normalize_keys({key.removeprefix("unet."): value for key, value in tensors.items()})
    modules = _weighted_modules(model)
    parameters = dict(model.named_parameters())
    parts: dict[str, dict[str, torch.Tensor]] = {}
    unknown, unmatched = [], []
    for key, value in tensors.items():
        parsed = split_key(key)
        if parsed is None:
            unknown.append(key)
            continue
        stem, role = parsed
        module = modules.get((ldm_name(stem) or "") if kind == "unet" else stem)
        if module is None:
            unmatched.append(key)
        else:
            parts.setdefault(f"{module}.weight", {})[role] = value
    if unknown:
        raise MotionModuleError(f"{source}: keys that are not LoRA keys: {', '.join(sorted(unknown)[:5])}")
    if unmatched:
        raise MotionModuleError(
            f"{source}: {len(unmatched)} LoRA keys do not match {_describe_model(model, kind)}, "
            f"e.g. {', '.join(sorted(unmatched)[:3])}"
        )
    factors = {}
    for target, pair in parts.items():
        missing = {"down", "up"} - set(pair)
        if missing:
            raise MotionModuleError(f"{source}: LoRA for {target} lacks its {missing.pop()} matrix")
        up, down, weight = pair["up"], pair["down"], parameters[target]
        if not _fits(up, down, weight):
            raise MotionModuleError(
                f"{source}: LoRA for {target} has up {list(up.shape)} and down {list(down.shape)}, "
                f"which do not make the weight's shape {list(weight.shape)}"
            )
        alpha = pair.get("alpha")
        if alpha is not None and alpha.numel() != 1:
            raise MotionModuleError(
                f"{source}: alpha of {target} has shape {list(alpha.shape)}, expected one value"
            )
        if not all(torch.isfinite(t).all() for t in pair.values()):
            raise MotionModuleError(f"{source}: LoRA for {target} contains NaN or Inf values")
        scale = float(alpha.item()) / down.shape[0] if alpha is not None else 1.0
        factors[target] = _Factor(weight, up, down, scale)
    return factors


def read_lora(
    model: nn.Module, path_or_state_dict: str | os.PathLike | Mapping[str, object], kind: Kind = "motion"
) -> LoraWeights:
    """Read a LoRA file or state dict and check it fits ``model`` (a motion module for ``"motion"``,
    an ldm ``UNetModel`` for ``"unet"``); raises ``MotionModuleError`` naming the source and the problem."""
    if isinstance(path_or_state_dict, Mapping):
        source = from_state_dict(path_or_state_dict, "<LoRA state dict>")
    else:
        source = open_checkpoint(path_or_state_dict)
    tensors = {key: source.read(key) for key in source.meta}
    return LoraWeights(source.name, model, _factors(tensors, model, kind, source.name))


@dataclass
class _Update:
    """One applied LoRA and its strength."""

    factors: dict[str, _Factor]
    strength: float


@dataclass
class _LoraStack:
    """The weights as they were before any LoRA, and the LoRAs applied on top, oldest first."""

    base: dict[str, tuple[nn.Parameter, torch.Tensor]] = field(default_factory=dict)
    updates: list[_Update] = field(default_factory=list)


_STACKS: weakref.WeakKeyDictionary[nn.Module, _LoraStack] = weakref.WeakKeyDictionary()


def _apply(update: _Update) -> None:
    with torch.no_grad():
        for factor in update.factors.values():
            weight = factor.weight
            compute = torch.promote_types(weight.dtype, torch.float32)
            merged = weight.to(compute) + (update.strength * factor.scale) * factor.delta(compute)
            weight.copy_(merged.to(weight.dtype))


class MotionLoraHandle:
    """One applied LoRA (on a motion module or the UNet); :meth:`remove` takes it off again (idempotent)."""

    def __init__(self, model: nn.Module, update: _Update) -> None:
        self._model = model
        self._update = update

    @property
    def active(self) -> bool:
        stack = _STACKS.get(self._model)
        return stack is not None and any(u is self._update for u in stack.updates)

    def remove(self) -> None:
        """Restore the stored weights and re-apply the LoRAs that remain."""
        stack = _STACKS.get(self._model)
        if stack is None or not self.active:
            return
        stack.updates = [u for u in stack.updates if u is not self._update]
        with torch.no_grad():
            for weight, original in stack.base.values():
                weight.copy_(original)
        for update in stack.updates:
            _apply(update)
        if not stack.updates:
            del _STACKS[self._model]


def apply_lora(lora: LoraWeights, strength: float = 1.0) -> MotionLoraHandle:
    """Add a checked LoRA to its model with ``strength`` (any finite number)."""
    if isinstance(strength, bool) or not isinstance(strength, (int, float)) or not math.isfinite(strength):
        raise MotionModuleError(f"strength={strength!r} must be a finite number")
    update = _Update(lora.factors, float(strength))
    stack = _STACKS.setdefault(lora.model, _LoraStack())
    for target, factor in update.factors.items():
        if target not in stack.base:
            stack.base[target] = (factor.weight, factor.weight.detach().clone())
    _apply(update)
    stack.updates.append(update)
    return MotionLoraHandle(lora.model, update)


def apply_motion_lora(
    mm: nn.Module, path_or_state_dict: str | os.PathLike | Mapping[str, object], strength: float = 1.0
) -> MotionLoraHandle:
    """Add a motion LoRA to ``mm``; everything is checked before any weight changes."""
    return apply_lora(read_lora(mm, path_or_state_dict, "motion"), strength)
