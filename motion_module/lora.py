"""Motion LoRA: low-rank updates ``W += strength * up @ down`` on the temporal attention projections.

Accepted key namings, for ``…attention_blocks.{0,1}`` (or diffusers' ``attn1``/``attn2``, optionally
prefixed ``unet.``): the original ``processor.{to_q,to_k,to_v,to_out}_lora.{down,up}.weight`` and
the peft/diffusers ``{to_q,…,to_out.0}.lora_{A,B}.weight`` / ``.lora.{down,up}.weight``.

Several LoRAs stack on one module. The first LoRA touching a weight stores a copy of it; removing a
LoRA puts the stored weights back and re-applies the LoRAs still active in their order, so removing
every LoRA leaves the module bit-identical to before, in any removal order.
"""

from __future__ import annotations

import math
import os
import re
import weakref
from collections.abc import Mapping
from dataclasses import dataclass, field

import torch

from motion_module.checkpoint_io import from_state_dict, open_checkpoint
from motion_module.errors import MotionModuleError
from motion_module.formats import normalize_keys
from motion_module.model import MotionModule

LORA_KEY = re.compile(
    r"^(?P<layer>.+\.attention_blocks\.\d+)\."
    r"(?:processor\.(?P<proj>to_q|to_k|to_v|to_out)_lora\.(?P<dir>down|up)"
    r"|(?P<proj2>to_q|to_k|to_v|to_out(?:\.0)?)\.(?:lora_(?P<ab>A|B)|lora\.(?P<dir2>down|up)))\.weight$"
)


@dataclass
class _Update:
    """One LoRA's factors per target weight name, and its strength."""

    factors: dict[str, tuple[torch.Tensor, torch.Tensor]]
    strength: float


@dataclass
class _LoraStack:
    """The weights as they were before any LoRA, and the LoRAs applied on top, oldest first."""

    base: dict[str, torch.Tensor] = field(default_factory=dict)
    updates: list[_Update] = field(default_factory=list)


_STACKS: weakref.WeakKeyDictionary[MotionModule, _LoraStack] = weakref.WeakKeyDictionary()


def _parse_key(key: str) -> tuple[str, str] | None:
    """``(target weight name, "down" | "up")`` for a normalised LoRA key, or None."""
    match = LORA_KEY.match(key)
    if match is None:
        return None
    projection = match["proj"] or match["proj2"]
    projection = "to_out.0" if projection.startswith("to_out") else projection
    direction = match["dir"] or match["dir2"] or {"A": "down", "B": "up"}[match["ab"]]
    return f"{match['layer']}.{projection}.weight", direction


def _factors(
    lora: Mapping[str, torch.Tensor], mm: MotionModule, source: str
) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Validate every LoRA key against ``mm`` and pair the factors: target -> (up, down)."""
    stripped = {key.removeprefix("unet."): value for key, value in lora.items()}
    normalized, _ = normalize_keys(stripped)
    parameters = dict(mm.named_parameters())
    pairs: dict[str, dict[str, torch.Tensor]] = {}
    unknown, unmatched = [], []
    for key, value in normalized.items():
        parsed = _parse_key(key)
        if parsed is None:
            unknown.append(key)
        elif parsed[0] not in parameters:
            unmatched.append(key)
        else:
            pairs.setdefault(parsed[0], {})[parsed[1]] = value
    if unknown:
        raise MotionModuleError(
            f"{source}: keys that are not motion-LoRA keys: {', '.join(sorted(unknown)[:5])}"
        )
    if unmatched:
        raise MotionModuleError(
            f"{source}: {len(unmatched)} LoRA keys do not match this {mm.variant!r} motion module, "
            f"e.g. {', '.join(sorted(unmatched)[:3])}"
        )
    factors = {}
    for target, pair in pairs.items():
        if set(pair) != {"down", "up"}:
            raise MotionModuleError(
                f"{source}: LoRA for {target} lacks its {({'down', 'up'} - set(pair)).pop()} matrix"
            )
        up, down = pair["up"], pair["down"]
        weight = parameters[target]
        if (
            up.dim() != 2
            or down.dim() != 2
            or up.shape[1] != down.shape[0]
            or (up.shape[0], down.shape[1]) != weight.shape
        ):
            raise MotionModuleError(
                f"{source}: LoRA for {target} has up {list(up.shape)} and down {list(down.shape)}, "
                f"which do not make the weight's shape {list(weight.shape)}"
            )
        if not (torch.isfinite(up).all() and torch.isfinite(down).all()):
            raise MotionModuleError(f"{source}: LoRA for {target} contains NaN or Inf values")
        factors[target] = (up, down)
    return factors


def _apply(parameters: dict[str, torch.nn.Parameter], update: _Update) -> None:
    with torch.no_grad():
        for target, (up, down) in update.factors.items():
            weight = parameters[target]
            compute = torch.promote_types(weight.dtype, torch.float32)
            delta = up.to(weight.device, compute) @ down.to(weight.device, compute)
            weight.copy_((weight.to(compute) + update.strength * delta).to(weight.dtype))


class MotionLoraHandle:
    """One applied LoRA; :meth:`remove` takes it off again (idempotent)."""

    def __init__(self, mm: MotionModule, update: _Update) -> None:
        self._mm = mm
        self._update = update

    @property
    def active(self) -> bool:
        stack = _STACKS.get(self._mm)
        return stack is not None and any(u is self._update for u in stack.updates)

    def remove(self) -> None:
        """Restore the stored weights and re-apply the LoRAs that remain."""
        stack = _STACKS.get(self._mm)
        if stack is None or not self.active:
            return
        stack.updates = [u for u in stack.updates if u is not self._update]
        parameters = dict(self._mm.named_parameters())
        with torch.no_grad():
            for target, original in stack.base.items():
                parameters[target].copy_(original)
        for update in stack.updates:
            _apply(parameters, update)
        if not stack.updates:
            del _STACKS[self._mm]


def apply_motion_lora(
    mm: MotionModule, path_or_state_dict: str | os.PathLike | Mapping[str, object], strength: float = 1.0
) -> MotionLoraHandle:
    """Add a motion LoRA to ``mm``'s attention projections; everything is checked before any weight changes."""
    if isinstance(strength, bool) or not isinstance(strength, (int, float)) or not math.isfinite(strength):
        raise MotionModuleError(f"strength={strength!r} must be a finite number")
    if isinstance(path_or_state_dict, Mapping):
        source = from_state_dict(path_or_state_dict, "<motion LoRA state dict>")
    else:
        source = open_checkpoint(path_or_state_dict)
    lora = {key: source.read(key) for key in source.meta}
    update = _Update(_factors(lora, mm, source.name), float(strength))
    parameters = dict(mm.named_parameters())
    stack = _STACKS.setdefault(mm, _LoraStack())
    for target in update.factors:
        if target not in stack.base:
            stack.base[target] = parameters[target].detach().clone()
    _apply(parameters, update)
    stack.updates.append(update)
    return MotionLoraHandle(mm, update)
