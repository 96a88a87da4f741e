"""Drive the extension in the fake A1111 host: load ``scripts/animatediff.py`` as A1111 does, build
processing objects with the script's arguments, and snapshot the UNet to prove it is restored."""

from __future__ import annotations

import hashlib
import importlib.util
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch

from lib_animatediff.params import AnimateDiffParams
from tests.fake_webui.host import FakeHost, install
from tests.fake_webui.sd_model import FakeSDModel
from tests.fixtures.mm_checkpoints import make_state_dict, write_checkpoint
from tests.fixtures.tiny_models import block_channels, tiny_ldm_unet

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "animatediff.py"
MODEL_NAME = "tiny_v3.safetensors"


def write_tiny_motion_module(
    folder: Path, name: str = MODEL_NAME, seed: int = 7, *, variant: str = "v3"
) -> Path:
    """A random-weight motion module (v3 by default) for the tiny UNet of its family, as safetensors."""
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    layout = "sdxl" if variant in ("sdxl", "hotshotxl") else "sd15"
    return write_checkpoint(path, make_state_dict(variant, channels=block_channels(layout), seed=seed))


def load_script_module(monkeypatch: pytest.MonkeyPatch) -> Any:
    """Execute ``scripts/animatediff.py`` the way A1111's ``script_loading.load_module`` does."""
    spec = importlib.util.spec_from_file_location("animatediff.py", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setattr(sys, "path", [str(REPO), *sys.path])
    spec.loader.exec_module(module)
    return module


def unet_fingerprint(unet: torch.nn.Module) -> tuple[str, tuple[str, ...], tuple[str, ...]]:
    """Hash of every tensor in the state dict, the module tree, and the instance attributes."""
    digest = hashlib.sha256()
    for key, value in unet.state_dict().items():
        digest.update(key.encode())
        digest.update(value.detach().cpu().contiguous().numpy().tobytes())
    modules = tuple(f"{name}:{type(module).__name__}" for name, module in unet.named_modules())
    patched = tuple(sorted(name for module in unet.modules() for name in vars(module) if name == "forward"))
    return digest.hexdigest(), modules, patched


@dataclass
class Extension:
    """The fake host with the extension loaded: one script per tab and the shared SD model."""

    host: FakeHost
    script_module: Any
    sd_model: FakeSDModel
    model_dir: Path

    def script(self, *, is_img2img: bool) -> Any:
        script = self.script_module.AnimateDiffScript()
        script.is_img2img = is_img2img
        script.is_txt2img = not is_img2img
        script.filename = str(SCRIPT)
        return script

    def processing(
        self,
        params: AnimateDiffParams | dict | list | None,
        *,
        img2img: bool = False,
        selected_script: Any = None,
        **kwargs: Any,
    ) -> Any:
        """A txt2img/img2img processing object whose script arguments carry ``params``.

        ``AnimateDiffParams`` become the accordion's positional values; a dict or list is passed as
        an API request passes it (first slot, rest left at the accordion defaults). With
        ``selected_script`` the arguments start with A1111's script dropdown index selecting it.
        """
        script = self.script(is_img2img=img2img)
        defaults = AnimateDiffParams().to_ui(is_img2img=img2img)
        if isinstance(params, AnimateDiffParams):
            args = params.to_ui(is_img2img=img2img)
        elif isinstance(params, dict):
            args = [params, *defaults[1:]]
        elif isinstance(params, list):
            args = params + defaults[len(params) :]
        else:
            args = defaults
        selectable = [selected_script] if selected_script is not None else []
        args = [1, *args] if selected_script is not None else args
        script.args_from, script.args_to = len(selectable), len(args)
        processing = self.host.processing
        cls = (
            processing.StableDiffusionProcessingImg2Img
            if img2img
            else processing.StableDiffusionProcessingTxt2Img
        )
        options = {"prompt": "a tiny cat", "negative_prompt": "blurry", "steps": 2, "seed": 11}
        options.update(kwargs)
        return cls(
            sd_model=self.sd_model,
            outpath_samples=str(self.host.root / "outputs"),
            scripts=self.host.scripts.ScriptRunner([script], selectable),
            script_args=list(args),
            **options,
        )


def load_extension(monkeypatch: pytest.MonkeyPatch, root: Path, *, sdxl: bool = False) -> Extension:
    """Fake host + tiny SD model (SD1.5, or SDXL) + one tiny motion module of its family
    (``MODEL_NAME``) + the extension's script loaded."""
    host = install(monkeypatch, root)
    sd_model = FakeSDModel(tiny_ldm_unet("sdxl" if sdxl else "sd15", seed=0), sdxl=sdxl)
    host.shared.sd_model = sd_model
    model_dir = root / "animatediff-models"
    write_tiny_motion_module(model_dir, variant="sdxl" if sdxl else "v3")
    host.shared.cmd_opts.animatediff_model_path = str(model_dir)
    module = load_script_module(monkeypatch)
    module.model_cache.cache.remove()
    return Extension(host, module, sd_model, model_dir)
