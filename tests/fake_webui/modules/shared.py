"""Mirrors A1111 ``modules/shared.py``, ``shared_state.py`` and ``options.py``: opts, state, cmd_opts.

``opts`` reads unknown keys from ``opts.data`` (as A1111's ``Options.__getattr__`` does) and has the
host options the extension and the fake sampler read, with A1111's defaults.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

HOST_DEFAULTS = {
    "batch_cond_uncond": True,
    "pad_cond_uncond": True,
    "skip_early_cond": 0.0,
    "s_min_uncond_all": False,
    "samples_save": True,
    "save_incomplete_images": False,
    "enable_pnginfo": True,
    "samples_format": "png",
    "return_grid": True,
    "grid_only_if_multiple": True,
}


class Options:
    """``opts``: attribute access to ``data``, falling back to the host defaults."""

    def __init__(self) -> None:
        object.__setattr__(self, "data", {})

    def __getattr__(self, key: str) -> Any:
        if key in self.data:
            return self.data[key]
        if key in HOST_DEFAULTS:
            return HOST_DEFAULTS[key]
        raise AttributeError(key)

    def __setattr__(self, key: str, value: Any) -> None:
        self.data[key] = value


class State:
    """``shared.state``: job progress and the interrupt / skip flags (``shared_state.State``)."""

    def __init__(self) -> None:
        self.interrupted = False
        self.skipped = False
        self.job = ""
        self.job_no = 0
        self.job_count = 0
        self.sampling_step = 0
        self.sampling_steps = 0
        self.textinfo = None
        self.progress_log: list[float] = []

    def interrupt(self) -> None:
        self.interrupted = True

    def skip(self) -> None:
        self.skipped = True

    def nextjob(self) -> None:
        self.job_no += 1
        self.sampling_step = 0

    def __setattr__(self, key: str, value: Any) -> None:
        # records every progress change so tests can check the bar moves and never goes back
        if key == "sampling_step" and "progress_log" in self.__dict__:
            self.progress_log.append(value)
        object.__setattr__(self, key, value)


opts = Options()
state = State()
cmd_opts = SimpleNamespace(lowvram=False, medvram=False, no_half=True, api=False, lora_dir=None)
sd_model: Any = None
device = None
