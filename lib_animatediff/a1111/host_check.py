"""Which AUTOMATIC1111 WebUI this extension runs on: 1.10.0 and 1.10.1 (the 1.10 line).

It uses host APIs that older releases lack, so on them it stops at load time with a message naming
what is missing, instead of failing half-way through a generation:

* ``Script.process_before_every_sampling`` (1.10): FreeNoise reschedules the noise of every
  sampling pass there;
* the ``name=`` keyword of ``script_callbacks.on_*`` (1.9).
"""

from __future__ import annotations

import inspect
from types import ModuleType

SUPPORTED = "1.10.0 - 1.10.1"


def missing_features(scripts: ModuleType, script_callbacks: ModuleType) -> list[str]:
    """The host APIs this extension needs that the loaded A1111 does not have."""
    missing = []
    if not hasattr(scripts.Script, "process_before_every_sampling"):
        missing.append("Script.process_before_every_sampling (A1111 1.10)")
    if "name" not in inspect.signature(script_callbacks.on_cfg_denoiser).parameters:
        missing.append("the name= keyword of script_callbacks.on_cfg_denoiser (A1111 1.9)")
    return missing


def check_host(scripts: ModuleType, script_callbacks: ModuleType) -> None:
    """Raise ``ImportError`` naming what is missing when this A1111 is older than 1.10."""
    missing = missing_features(scripts, script_callbacks)
    if missing:
        raise ImportError(
            f"AnimateDiff needs AUTOMATIC1111 WebUI {SUPPORTED}; this WebUI lacks {'; '.join(missing)}. "
            "Update the WebUI (git pull) or disable this extension."
        )
