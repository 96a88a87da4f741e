"""A fake sd-webui-controlnet for the fake host: its modules load as ``scripts.enums``,
``scripts.external_code`` and ``scripts.controlnet`` (the names the real extension's modules have
inside A1111), and :func:`attach` adds its Script and units to a processing object."""

from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path
from typing import Any

import pytest

SCRIPTS_DIR = Path(__file__).parent / "scripts"
MODULE_NAMES = ("enums", "external_code", "controlnet")


def install(monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    """Load the fake ControlNet modules (after the fake ``modules.*``); returns ``scripts.controlnet``."""
    module = None
    for name in MODULE_NAMES:
        spec = importlib.util.spec_from_file_location(f"scripts.{name}", SCRIPTS_DIR / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        monkeypatch.setitem(sys.modules, spec.name, module)
        spec.loader.exec_module(module)
    return module


def attach(p: Any, script: Any, units: list[Any]) -> None:
    """Make ``script`` (the ControlNet Script) an always-on script of ``p`` with ``units`` as its args."""
    args = list(p.script_args)
    script.args_from, script.args_to = len(args), len(args) + len(units)
    p.script_args = [*args, *units]
    p.scripts.alwayson_scripts.append(script)
