"""Install the fake A1111 host into ``sys.modules`` for one test (see :mod:`tests.fake_webui`)."""

from __future__ import annotations

import importlib.util
import sys
import types
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.fake_webui.kdiffusion_loader import load_k_diffusion

MODULES_DIR = Path(__file__).parent / "modules"
SCRIPTS_DIR = Path(__file__).parent / "scripts"  # A1111's built-in scripts/ folder
# dependency order: every module's relative imports are loaded before it
MODULE_NAMES = (
    "errors", "paths", "devices", "lowvram", "hashes", "sd_samplers_common", "shared",
    "script_callbacks", "images", "scripts", "prompt_parser", "sd_samplers_cfg_denoiser", "sd_samplers_kdiffusion",
    "sd_samplers", "extra_networks", "processing", "infotext_utils", "img2img",
)  # fmt: skip


@dataclass
class FakeHost:
    """The freshly loaded fake ``modules.*`` of one test."""

    modules: dict[str, types.ModuleType]
    root: Path

    def __getattr__(self, name: str) -> types.ModuleType:
        try:
            return self.modules[name]
        except KeyError:
            raise AttributeError(name) from None


def install(monkeypatch: pytest.MonkeyPatch, root: Path) -> FakeHost:
    """Load fresh fake ``modules.*`` (and k-diffusion) into ``sys.modules``; folders go under ``root``."""
    load_k_diffusion(monkeypatch)
    package = types.ModuleType("modules")
    package.__path__ = [str(MODULES_DIR)]
    monkeypatch.setitem(sys.modules, "modules", package)
    loaded: dict[str, types.ModuleType] = {}
    for name in MODULE_NAMES:
        spec = importlib.util.spec_from_file_location(f"modules.{name}", MODULES_DIR / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        monkeypatch.setitem(sys.modules, spec.name, module)
        spec.loader.exec_module(module)
        setattr(package, name, module)
        loaded[name] = module
    paths = loaded["paths"]
    paths.script_path = str(root)
    paths.models_path = str(root / "models")
    paths.data_path = str(root)
    loaded["shared"].cmd_opts.lora_dir = str(root / "models" / "Lora")
    return FakeHost(loaded, root)


def install_xyz_grid(host: FakeHost) -> types.ModuleType:
    """Load the fake X/Y/Z plot script as A1111's ``script_loading.load_module`` does (module name
    ``xyz_grid.py``, not put into ``sys.modules``) and list it in ``scripts.scripts_data``."""
    path = SCRIPTS_DIR / "xyz_grid.py"
    spec = importlib.util.spec_from_file_location(path.name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    scripts = host.scripts
    scripts.scripts_data.append(scripts.ScriptClassData(module.Script, str(path), str(host.root), module))
    return module
