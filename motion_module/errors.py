"""The one exception type every motion-module rejection raises."""

from __future__ import annotations


class MotionModuleError(ValueError):
    """A motion-module file, state dict, LoRA or call that cannot be used; the message says why."""
