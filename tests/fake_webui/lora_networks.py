"""Mirrors the name lookup of A1111's built-in Lora extension (``extensions-builtin/Lora/networks.py``,
imported by A1111 as the top-level module ``networks``): files under ``cmd_opts.lora_dir`` with a
LoRA suffix, listed by file stem and by their ``ss_output_name`` alias; an alias two files share is
forbidden and only the file stem finds them. Loading and applying networks is not mirrored.
"""

from __future__ import annotations

import importlib.util
import json
import os
import struct
import sys
import types
from pathlib import Path

import pytest

LORA_SUFFIXES = (".pt", ".ckpt", ".safetensors")


class NetworkOnDisk:
    def __init__(self, name: str, filename: str) -> None:
        self.name = name
        self.filename = filename
        self.alias = safetensors_metadata(filename).get("ss_output_name", name)


def safetensors_metadata(filename: str) -> dict:
    if not filename.endswith(".safetensors"):
        return {}
    with open(filename, "rb") as stream:
        (size,) = struct.unpack("<Q", stream.read(8))
        return json.loads(stream.read(size)).get("__metadata__", {})


def install(monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    """A fresh ``networks`` module in ``sys.modules``, listing the fake host's LoRA folder."""
    spec = importlib.util.spec_from_loader("networks", loader=None)
    module = importlib.util.module_from_spec(spec)
    module.available_networks = {}
    module.available_network_aliases = {}
    module.forbidden_network_aliases = {}

    def list_available_networks() -> None:
        from modules import shared

        module.available_networks.clear()
        module.available_network_aliases.clear()
        module.forbidden_network_aliases.clear()
        module.forbidden_network_aliases.update({"none": 1, "Addams": 1})
        for folder, _, files in os.walk(shared.cmd_opts.lora_dir, followlinks=True):
            for file in sorted(files):
                if Path(file).suffix.lower() not in LORA_SUFFIXES:
                    continue
                entry = NetworkOnDisk(Path(file).stem, os.path.join(folder, file))
                module.available_networks[entry.name] = entry
                if entry.alias in module.available_network_aliases:
                    module.forbidden_network_aliases[entry.alias.lower()] = 1
                module.available_network_aliases[entry.name] = entry
                module.available_network_aliases[entry.alias] = entry

    module.list_available_networks = list_available_networks
    monkeypatch.setitem(sys.modules, "networks", module)
    return module
