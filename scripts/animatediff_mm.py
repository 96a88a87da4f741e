"""Compatibility shim: sd-webui-controlnet's SparseCtrl imports these names from the original
extension's ``scripts.animatediff_mm`` (no Script here)."""

from lib_animatediff.a1111.compat import MotionWrapper
from motion_module.wrapper import MotionModuleType

__all__ = ["MotionModuleType", "MotionWrapper"]
