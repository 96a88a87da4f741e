"""A1111 entry point: the always-visible "AnimateDiff" script for txt2img and img2img.

A1111 caches imported modules by name for every extension, and the original sd-webui-animatediff
ships a top-level ``motion_module.py``. Before importing anything of ours this file checks that
``lib_animatediff`` and ``motion_module`` are either not imported yet or imported from this
extension's folder, and stops with a message naming the other extension otherwise. It then
imports every package it needs while A1111 has the extension folder on ``sys.path``.
"""

from __future__ import annotations

import importlib
import logging
import sys
from pathlib import Path

EXTENSION_ROOT = Path(__file__).resolve().parent.parent
OWN_PACKAGES = ("lib_animatediff", "motion_module")


def foreign_module(name: str) -> str | None:
    """Where an already imported top-level module ``name`` comes from, when that is not this extension."""
    module = sys.modules.get(name)
    if module is None:
        return None
    origin = getattr(module, "__file__", None) or next(iter(getattr(module, "__path__", [])), None)
    if origin and EXTENSION_ROOT in Path(origin).resolve().parents:
        return None
    return str(origin)


def claim_packages() -> None:
    """Make ``import lib_animatediff`` / ``import motion_module`` resolve to this extension."""
    for name in OWN_PACKAGES:
        origin = foreign_module(name)
        if origin is not None:
            raise ImportError(
                f"AnimateDiff ({EXTENSION_ROOT}): the module name '{name}' is already taken by {origin}. "
                "Another AnimateDiff extension (such as sd-webui-animatediff) is enabled; disable one of them."
            )
    if str(EXTENSION_ROOT) not in sys.path:
        sys.path.insert(0, str(EXTENSION_ROOT))


claim_packages()

from modules import script_callbacks, scripts, shared  # noqa: E402

from lib_animatediff.a1111.host_check import check_host  # noqa: E402

check_host(scripts, script_callbacks)

import motion_module  # noqa: E402, F401  (imported now, while the extension folder is on sys.path)
from lib_animatediff.a1111 import (  # noqa: E402
    i2i_batch,
    infotext,
    model_cache,
    outputs,
    routes,
    script_flow,
    settings,
    xyz,
)

LOGGERS = ("lib_animatediff", "motion_module")


def setup_logging(level: str | None) -> None:
    """Our packages log to the console as ``[AnimateDiff] LEVEL message`` (level from the preload flag)."""
    for name in LOGGERS:
        logger = logging.getLogger(name)
        logger.setLevel((level or "INFO").upper())
        logger.propagate = False
        if not logger.handlers:
            handler = logging.StreamHandler(sys.stdout)
            handler.setFormatter(logging.Formatter("[AnimateDiff] %(levelname)s %(message)s"))
            logger.addHandler(handler)


setup_logging(getattr(shared.cmd_opts, "animatediff_loglevel", None))

COMPAT_SHIMS = (
    "scripts.animatediff_i2ibatch",
    "scripts.animatediff_mm",
    "scripts.animatediff_utils",
)  # sd-webui-controlnet imports these at run time


def load_compat_shims() -> None:
    """Import the compatibility shims now, while A1111 has the extension folder on ``sys.path``
    (it takes the folder off after loading scripts; imported modules stay importable)."""
    for name in COMPAT_SHIMS:
        try:
            importlib.import_module(name)
        except ImportError as error:
            logging.getLogger("lib_animatediff").warning(
                "%s not loaded, ControlNet cannot use it: %s", name, error
            )


load_compat_shims()


class AnimateDiffScript(scripts.Script):
    """The accordion and the generation hooks; the work is done in ``lib_animatediff.a1111``."""

    def title(self) -> str:
        return "AnimateDiff"

    def show(self, is_img2img: bool) -> object:
        return scripts.AlwaysVisible

    def ui(self, is_img2img: bool) -> list:
        from modules import sd_models

        from lib_animatediff.a1111.ui import AnimateDiffUI

        self._ui = AnimateDiffUI(
            is_img2img,
            model_dir=model_cache.model_dir,
            default_formats=settings.get("animatediff_default_save_formats"),
            loaded_model=lambda: sd_models.model_data.sd_model,
            on_unload=model_cache.cache.offload,
            on_remove=model_cache.cache.remove,
            film_problem=outputs.missing_film_model,
        )
        components = self._ui.render()
        self.infotext_fields = self._ui.infotext_fields
        self.paste_field_names = self._ui.paste_field_names
        return components

    def before_process(self, p, *args) -> None:
        script_flow.before_process(p, args, is_img2img=self.is_img2img)

    def before_process_batch(self, p, *args, **kwargs) -> None:
        run = script_flow.current_run(p)
        if run is not None and self.is_img2img:
            run.prepare_init_latents()

    def process_before_every_sampling(self, p, *args, **kwargs) -> None:
        run = script_flow.current_run(p)
        if run is not None and kwargs.get("noise") is not None:
            run.reschedule_noise(kwargs["noise"])

    def postprocess_batch_list(self, p, pp, *args, **kwargs) -> None:
        run = script_flow.current_run(p)
        if run is not None:
            run.restore_prompts()

    def postprocess_image(self, p, pp, *args) -> None:
        if script_flow.current_run(p) is not None:
            i2i_batch.select_frame_crop(p)

    def postprocess(self, p, processed, *args) -> None:
        run = script_flow.current_run(p)
        if run is None:
            return
        try:
            outputs.write_outputs(p, processed, run)
        finally:
            run.finish()


script_callbacks.on_cfg_denoiser(script_flow.on_cfg_denoiser, name="animatediff_windows")
script_callbacks.on_infotext_pasted(infotext.on_infotext_pasted, name="animatediff_infotext")
script_callbacks.on_app_started(routes.register_routes, name="animatediff_api")
script_callbacks.on_ui_settings(settings.on_ui_settings, name="animatediff_settings")
script_callbacks.on_before_ui(xyz.register_axes, name="animatediff_xyz")
i2i_batch.install()
script_callbacks.on_script_unloaded(i2i_batch.uninstall, name="animatediff_i2i_batch")
