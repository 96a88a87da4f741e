"""``[AnimateDiff] …`` axes for A1111's X/Y/Z plot script.

The axes are added from ``script_callbacks.on_before_ui`` to the ``axis_options`` of the X/Y/Z plot
module found in ``modules.scripts.scripts_data`` (A1111 loads it as ``xyz_grid.py``; older names are
accepted as the original does), once. An axis value is stored on the processing object the plot
made for its cell (a new dict each time: the plot's cells are shallow copies of one ``p``);
:func:`lib_animatediff.a1111.script_args.parse_script_args` puts them (:func:`overrides_of`) over the
UI/API parameters, so they are validated like any other value.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from collections.abc import Callable
from types import ModuleType
from typing import Any

from lib_animatediff.coercion import as_bool
from lib_animatediff.options import CLOSED_LOOP_MODES, INTERP_METHODS

XYZ_ATTRIBUTE = "animatediff_xyz"  # {field: value} of the X/Y/Z plot's cell, on its processing object
LABEL_PREFIX = "[AnimateDiff]"
XYZ_MODULE_NAMES = frozenset({"xyz_grid.py", "xy_grid.py", "scripts.xyz_grid", "scripts.xy_grid"})
logger = logging.getLogger(__name__)


def _models() -> list[str]:
    from lib_animatediff.a1111 import model_cache

    return model_cache.list_models(model_cache.model_dir())


@dataclasses.dataclass(frozen=True)
class Axis:
    """One axis: its label after the prefix, the params field it sets, how A1111 parses its values."""

    label: str
    field: str
    type: Callable[[str], Any]
    choices: Callable[[], list[str]] | None = None
    img2img_only: bool = False


AXES = (
    Axis("Enabled", "enable", functools.partial(as_bool, "enable"), lambda: ["False", "True"]),
    Axis("Motion Module", "model", str, _models),
    Axis("Video length", "video_length", int),
    Axis("FPS", "fps", float),
    Axis("Closed loop", "closed_loop", str, lambda: list(CLOSED_LOOP_MODES)),
    Axis("Batch size", "batch_size", int),
    Axis("Stride", "stride", int),
    Axis("Overlap", "overlap", int),
    Axis("Interp", "interp", str, lambda: list(INTERP_METHODS)),
    Axis("Interp X", "interp_x", int),
    Axis("Video path", "video_path", str),
    Axis("Latent power", "latent_power", float, img2img_only=True),
    Axis("Latent scale", "latent_scale", float, img2img_only=True),
    Axis("Latent power last", "latent_power_last", float, img2img_only=True),
    Axis("Latent scale last", "latent_scale_last", float, img2img_only=True),
)


def find_xyz_module() -> ModuleType | None:
    """The loaded X/Y/Z plot script's module, if A1111 has one."""
    from modules import scripts

    for data in scripts.scripts_data:
        if data.script_class.__module__ in XYZ_MODULE_NAMES and getattr(data, "module", None) is not None:
            return data.module
    return None


def store(field: str) -> Callable[[Any, Any, Any], None]:
    """The axis' ``apply(p, value, values)``: record ``field = value`` on this cell's ``p`` only."""

    def apply(p: Any, value: Any, values: Any) -> None:
        setattr(p, XYZ_ATTRIBUTE, {**(getattr(p, XYZ_ATTRIBUTE, None) or {}), field: value})

    return apply


def register_axes() -> None:
    """``on_before_ui`` callback: add the axes to the X/Y/Z plot (once; nothing without the plot)."""
    module = find_xyz_module()
    if module is None:
        logger.warning("X/Y/Z plot script not found; no AnimateDiff axes added.")
        return
    if any(str(option.label).startswith(LABEL_PREFIX) for option in module.axis_options):
        return
    for axis in AXES:
        kind = module.AxisOptionImg2Img if axis.img2img_only else module.AxisOption
        module.axis_options.append(
            kind(f"{LABEL_PREFIX} {axis.label}", axis.type, store(axis.field), choices=axis.choices)
        )


def overrides_of(p: Any) -> dict[str, Any]:
    """This cell's axis values, ``{field: value}`` (validated with the other params when applied)."""
    return dict(getattr(p, XYZ_ATTRIBUTE, None) or {})


def in_xyz_plot(p: Any) -> bool:
    """Whether ``p`` is a cell of an X/Y/Z plot (an AnimateDiff axis set, or the plot is the selected script)."""
    if getattr(p, XYZ_ATTRIBUTE, None):
        return True
    args = getattr(p, "script_args", None)
    index = args[0] if args else None
    selectable = getattr(getattr(p, "scripts", None), "selectable_scripts", None) or []
    if not isinstance(index, int) or isinstance(index, bool) or not 0 < index <= len(selectable):
        return False
    return type(selectable[index - 1]).__module__ in XYZ_MODULE_NAMES
