"""AnimateDiff motion modules: the temporal layers, checkpoint loading, injection and motion LoRA."""

from motion_module.errors import MotionModuleError
from motion_module.inject import InjectionHandle, inject
from motion_module.loading import detect_variant, load_motion_module
from motion_module.lora import MotionLoraHandle, apply_motion_lora
from motion_module.model import MotionModule, TemporalTransformer
from motion_module.variants import BetaSchedule

__all__ = [
    "BetaSchedule",
    "InjectionHandle",
    "MotionLoraHandle",
    "MotionModule",
    "MotionModuleError",
    "TemporalTransformer",
    "apply_motion_lora",
    "detect_variant",
    "inject",
    "load_motion_module",
]
