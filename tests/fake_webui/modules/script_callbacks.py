"""Mirrors A1111 ``modules/script_callbacks.py``: the callback registry the extension uses.

As in A1111, an exception raised by a callback is reported and swallowed.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from typing import Any

from . import errors

callbacks: dict[str, list[Callable]] = defaultdict(list)


class CFGDenoiserParams:
    """What ``on_cfg_denoiser`` callbacks get, before the CFG denoiser calls the model."""

    def __init__(
        self, x, image_cond, sigma, sampling_step, total_sampling_steps, text_cond, text_uncond, denoiser=None
    ):
        self.x = x
        self.image_cond = image_cond
        self.sigma = sigma
        self.sampling_step = sampling_step
        self.total_sampling_steps = total_sampling_steps
        self.text_cond = text_cond
        self.text_uncond = text_uncond
        self.denoiser = denoiser


def _add(category: str, callback: Callable, name: str | None = None) -> None:
    callbacks[category].append(callback)


def _run(category: str, *args: Any) -> None:
    for callback in list(callbacks[category]):
        try:
            callback(*args)
        except Exception:
            errors.report(f"Error executing callback {category}", exc_info=True)


def on_cfg_denoiser(callback, *, name=None):
    _add("cfg_denoiser", callback, name)


def on_infotext_pasted(callback, *, name=None):
    _add("infotext_pasted", callback, name)


def on_app_started(callback, *, name=None):
    _add("app_started", callback, name)


def on_ui_settings(callback, *, name=None):
    _add("ui_settings", callback, name)


def on_script_unloaded(callback, *, name=None):
    _add("script_unloaded", callback, name)


def on_before_ui(callback, *, name=None):
    _add("before_ui", callback, name)


def cfg_denoiser_callback(params: CFGDenoiserParams) -> None:
    _run("cfg_denoiser", params)


def infotext_pasted_callback(infotext: str, params: dict[str, Any]) -> None:
    _run("infotext_pasted", infotext, params)


def app_started_callback(demo, app) -> None:
    _run("app_started", demo, app)


def script_unloaded_callback() -> None:
    _run("script_unloaded")


def before_ui_callback() -> None:
    _run("before_ui")
