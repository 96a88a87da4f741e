"""Motion LoRAs and the v3 domain adapter from ``<lora:name:multiplier>`` tags in the prompt.

A1111 parses the tags of a batch into ``p.extra_network_data["lora"]`` and its built-in Lora
extension loads each name. For every tag this module finds the same file A1111 would (the Lora
extension's ``networks`` lists, else a file with that stem under ``--lora-dir``) and looks at its
keys only (a safetensors header; ``.ckpt`` files through ``torch.load(weights_only=True)``):

* a motion LoRA (keys on motion-module layers; original, A1111-network or peft naming) is merged
  into the injected motion module with the tag's UNet multiplier;
* the v3 domain adapter in its original form (``down_blocks.0.attentions.0.….processor.to_q_lora…``)
  is merged into the ldm UNet's attention layers the same way;
* anything else (ordinary LoRAs, the re-keyed A1111-format adapter) is left to A1111.

A1111's Lora finds no layer of its own for our files' keys and only logs that at debug level
(``networks.load_network``), so the two never apply the same weights. Every LoRA is read and
checked before the first merge; all merges are undone with the run's journal, also on errors
and interrupts. Where A1111's Lora has backed up a UNet layer we merge into, see
:func:`share_with_host_lora`.
"""

from __future__ import annotations

import logging
import math
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lib_animatediff.a1111.script_args import RequestError
from lib_animatediff.coercion import ParamsError
from lib_animatediff.options import LORA_SUFFIXES
from motion_module.checkpoint_io import open_checkpoint
from motion_module.errors import MotionModuleError
from motion_module.inject_base import HostModule
from motion_module.journal import Journal
from motion_module.lora import Kind, LoraWeights, apply_lora, lora_kind, read_lora

KIND_NAMES = {"motion": "motion LoRA", "unet": "domain-adapter LoRA"}
logger = logging.getLogger(__name__)

_KINDS: dict[tuple[str, int, int], Kind | None] = {}


@dataclass(frozen=True)
class PlannedLora:
    """A LoRA of the prompt that AnimateDiff merges: checked against its model, not applied yet."""

    name: str
    path: Path
    kind: Kind
    strength: float
    weights: LoraWeights


def unet_multiplier(params: Any) -> float:
    """The UNet multiplier of one ``<lora:…>`` tag, read as A1111's Lora reads it: ``<name:te:unet>``
    or ``te=``/``unet=``; the UNet multiplier defaults to the text-encoder one, that to 1."""
    positional, named = list(params.positional), params.named
    te = float(positional[1]) if len(positional) > 1 else 1.0
    te = float(named.get("te", te))
    unet = float(positional[2]) if len(positional) > 2 else te
    return float(named.get("unet", unet))


def lora_roots() -> list[Path]:
    """The folders A1111's Lora lists files from (``--lora-dir`` and the old LyCORIS folder)."""
    from modules import shared

    folders = (getattr(shared.cmd_opts, name, None) for name in ("lora_dir", "lyco_dir_backcompat"))
    return [Path(os.path.abspath(folder)) for folder in folders if folder]


def _inside(path: Path, roots: list[Path]) -> bool:
    absolute = Path(os.path.abspath(path))
    return any(root in absolute.parents for root in roots)


def _scan(name: str, roots: list[Path]) -> Path | None:
    """The first file (sorted walk, symlinks followed as A1111 does) whose stem is ``name``."""
    for root in roots:
        for folder, dirs, files in os.walk(root, followlinks=True):
            dirs.sort()
            for file in sorted(files):
                if Path(file).stem == name and Path(file).suffix.lower() in LORA_SUFFIXES:
                    return Path(folder, file)
    return None


def find_lora_file(name: str) -> Path | None:
    """The file A1111's Lora loads for ``name``, or None; never a file outside the LoRA folders."""
    if not name or any(char in name for char in "/\\\x00") or name in (".", ".."):
        return None
    roots = lora_roots()
    networks = sys.modules.get("networks")
    aliases = getattr(networks, "available_network_aliases", None)
    if networks is None or aliases is None:
        path = _scan(name, roots)
    else:
        forbidden = getattr(networks, "forbidden_network_aliases", {})
        entry = (networks.available_networks if name.lower() in forbidden else aliases).get(name)
        path = Path(entry.filename) if entry is not None else None
    return path if path is not None and _inside(path, roots) and path.is_file() else None


def classify(path: Path) -> Kind | None:
    """``"motion"``, ``"unet"`` or None (A1111's), from the file's keys; cached per file version."""
    stat = path.stat()
    key = (str(path), stat.st_mtime_ns, stat.st_size)
    if key not in _KINDS:
        try:
            _KINDS[key] = lora_kind(open_checkpoint(path).meta)
        except MotionModuleError as error:
            logger.debug("AnimateDiff: not a LoRA for us (%s)", error)
            _KINDS[key] = None
    return _KINDS[key]


def plan_loras(p: Any, motion_module: nn.Module, unet: HostModule) -> list[PlannedLora]:
    """The motion and adapter LoRAs of ``p``'s batch, read and checked; ``RequestError`` (field
    ``lora``, the tag's name) for one that does not fit, before anything is merged."""
    if getattr(p, "disable_extra_networks", False):
        return []
    planned = []
    for params in (getattr(p, "extra_network_data", None) or {}).get("lora", []):
        if not params.positional:
            continue
        name = str(params.positional[0])
        path = find_lora_file(name)
        kind = classify(path) if path is not None else None
        if path is None or kind is None:
            continue
        try:
            strength = unet_multiplier(params)
            if not math.isfinite(strength):
                raise ValueError(f"the UNet multiplier {strength} is not a finite number")
            weights = read_lora(motion_module if kind == "motion" else unet, path, kind)
        except ValueError as error:
            raise RequestError.from_error(ParamsError("lora", name, str(error))) from None
        planned.append(PlannedLora(name, path, kind, strength, weights))
    return planned


def share_with_host_lora(journal: Journal, layers: list[HostModule]) -> Callable[[], None]:
    """Merge into UNet layers that A1111's Lora also patches, without either undoing the other.

    A1111 keeps each patched layer's unpatched weight as ``network_weights_backup`` and, whenever
    its set of networks changes (``network_current_names``), restores that backup and applies its
    networks on top. So now such layers get their backup weight back; the returned function,
    called after our merge, makes the merged weight their backup (A1111 then applies its networks
    on top of ours); when ``journal`` is undone, after our merge is, the original backup returns
    and A1111 is told to apply its networks afresh.
    """
    tracked = [layer for layer in dict.fromkeys(layers) if hasattr(layer, "network_layer_name")]
    for layer in tracked:
        backup = getattr(layer, "network_weights_backup", None)
        journal.record(partial(_hand_back, layer, backup), f"A1111 Lora backup of {layer.network_layer_name}")
        with torch.no_grad():
            if backup is not None:
                layer.weight.copy_(backup)
        layer.network_current_names = ()

    def adopt_merged_weights() -> None:
        for layer in tracked:
            layer.network_weights_backup = layer.weight.detach().to("cpu", copy=True)

    return adopt_merged_weights


def _hand_back(layer: HostModule, backup: torch.Tensor | None) -> None:
    """Give A1111's Lora its backup of ``layer`` back and make it apply its networks again."""
    layer.network_weights_backup = backup
    layer.network_current_names = ()


def apply_loras(journal: Journal, p: Any, motion_module: nn.Module, unet: HostModule) -> list[PlannedLora]:
    """Merge the prompt's motion LoRAs into ``motion_module`` and its v3 adapter into ``unet``
    (an ldm ``UNetModel``) until ``journal`` is undone; both are bit-identical again afterwards."""
    planned = plan_loras(p, motion_module, unet)
    unet_layers = [
        unet.get_submodule(target.removesuffix(".weight"))
        for plan in planned
        if plan.kind == "unet"
        for target in plan.weights.factors
    ]
    adopt = share_with_host_lora(journal, unet_layers)
    for plan in planned:
        journal.record(apply_lora(plan.weights, plan.strength).remove, f"{KIND_NAMES[plan.kind]} {plan.name}")
        logger.info(
            "AnimateDiff: applied %s %s (%s) with strength %g",
            KIND_NAMES[plan.kind],
            plan.name,
            plan.path.name,
            plan.strength,
        )
    adopt()
    return planned
