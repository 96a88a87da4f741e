"""Load ``k_diffusion.sampling`` and ``k_diffusion.external`` without the package's ``__init__``.

The k-diffusion package ``__init__`` imports its training code (scikit-image, torchvision, ...);
A1111 ships k-diffusion with those installed. Here a bare package module is registered instead and
only ``utils``, ``sampling`` and ``external`` are executed; ``utils`` imports torchvision at the top
for training helpers, so an empty stand-in is registered when torchvision is not installed.
Everything goes into ``sys.modules`` through pytest's ``monkeypatch`` and is removed after the test.
"""

from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path

import pytest

SUBMODULES = ("utils", "sampling", "external")


def _package_dir() -> Path:
    spec = importlib.util.find_spec("k_diffusion")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("k_diffusion is not installed (dev/requirements.txt)")
    return Path(next(iter(spec.submodule_search_locations)))


def _stub_torchvision(monkeypatch: pytest.MonkeyPatch) -> None:
    if importlib.util.find_spec("torchvision") is not None:
        return
    names = ("torchvision", "torchvision.transforms", "torchvision.transforms.functional")
    for name in names:
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    monkeypatch.setattr(sys.modules["torchvision"], "transforms", sys.modules[names[1]], raising=False)
    monkeypatch.setattr(sys.modules[names[1]], "functional", sys.modules[names[2]], raising=False)


def load_k_diffusion(monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    """Register a bare ``k_diffusion`` package with its ``utils``, ``sampling`` and ``external`` modules."""
    directory = _package_dir()
    _stub_torchvision(monkeypatch)
    package = types.ModuleType("k_diffusion")
    package.__path__ = [str(directory)]
    monkeypatch.setitem(sys.modules, "k_diffusion", package)
    for name in SUBMODULES:
        spec = importlib.util.spec_from_file_location(f"k_diffusion.{name}", directory / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        monkeypatch.setitem(sys.modules, spec.name, module)
        spec.loader.exec_module(module)
        setattr(package, name, module)
    return package
