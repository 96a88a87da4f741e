"""Mirrors sd-webui-controlnet ``internal_controlnet/args.py`` (``ControlNetUnit``, the fields
AnimateDiff reads and writes) and ``internal_controlnet/external_code.py`` (finding the script and
its units in a processing object), re-exported as ``scripts.external_code`` as the real one is."""

from __future__ import annotations

from copy import copy
from dataclasses import dataclass, field, fields
from typing import Any

from scripts.enums import HiResFixOption, InputMode


@dataclass
class ControlNetUnit:
    enabled: bool = True
    input_mode: InputMode = InputMode.SIMPLE
    batch_images: Any = None
    module: str = "none"
    model: str = "None"
    weight: float = 1.0
    image: Any = None
    guidance_start: float = 0.0
    guidance_end: float = 1.0
    hr_option: HiResFixOption = HiResFixOption.BOTH
    batch_mask_dir: str | None = None
    animatediff_batch: bool = False
    batch_modifiers: list = field(default_factory=list)
    batch_image_files: list = field(default_factory=list)
    batch_keyframe_idx: Any = None

    @property
    def is_animate_diff_batch(self) -> bool:
        return getattr(self, "animatediff_batch", False)

    @classmethod
    def from_dict(cls, values: dict) -> ControlNetUnit:
        values = copy(values)
        names = {f.name for f in fields(cls)}
        if isinstance(values.get("input_mode"), str):
            values["input_mode"] = InputMode(values["input_mode"])
        return cls(**{key: value for key, value in values.items() if key in names})


def to_processing_unit(unit: dict | ControlNetUnit) -> ControlNetUnit:
    if isinstance(unit, dict):
        return ControlNetUnit.from_dict(unit)
    assert isinstance(unit, ControlNetUnit)
    return unit


def is_cn_script(script: Any) -> bool:
    return script.title().lower() == "controlnet"


def find_cn_script(script_runner: Any) -> Any:
    if script_runner is None:
        return None
    for script in script_runner.alwayson_scripts:
        if is_cn_script(script):
            return script
    return None


def get_all_units_from(script_args: list) -> list[ControlNetUnit]:
    return [to_processing_unit(arg) for arg in script_args if isinstance(arg, ControlNetUnit | dict)]


def get_all_units(script_runner: Any, script_args: list) -> list[ControlNetUnit]:
    script = find_cn_script(script_runner)
    return get_all_units_from(script_args[script.args_from : script.args_to]) if script else []


def get_all_units_in_processing(p: Any) -> list[ControlNetUnit]:
    return get_all_units(p.scripts, p.script_args)
