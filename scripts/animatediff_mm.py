"""Compatibility shim: sd-webui-controlnet's SparseCtrl imports these names from the original
extension's ``scripts.animatediff_mm`` (no Script here)."""

from motion_module.wrapper import MotionModuleType, MotionWrapper

__all__ = ["MotionModuleType", "MotionWrapper"]
