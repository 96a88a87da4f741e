"""The ``AnimateDiff`` infotext entry: written into generation parameters, expanded on paste.

Written as the original does, one entry ``AnimateDiff: "model: ..., video_length: ..., ...,
mm_hash: <8 hex>, ..., version: <ours>"`` in ``p.extra_generation_params``. Pasting (``on_infotext_pasted``) splits it
into ``AnimateDiff <field>`` keys for the accordion and ticks "Enable AnimateDiff".
"""

from __future__ import annotations

from typing import Any

from lib_animatediff.params import INFOTEXT_PREFIX, AnimateDiffParams, ParamsError, parse_infotext


def write(p: Any, params: AnimateDiffParams, motion_module: Any, *, is_img2img: bool) -> None:
    """Record the resolved params, the motion module's short hash and this extension's version in
    ``p``'s infotext."""
    from lib_animatediff.version import version

    short_hash = getattr(motion_module, "short_hash", None)
    p.extra_generation_params[INFOTEXT_PREFIX] = params.to_infotext(
        mm_hash=short_hash, version=version(), is_img2img=is_img2img
    )


def on_infotext_pasted(infotext: str, params: dict[str, Any]) -> None:
    """A1111 paste callback: ``AnimateDiff`` → ``AnimateDiff <field>`` entries (+ enable)."""
    value = params.get(INFOTEXT_PREFIX)
    if not isinstance(value, str):
        return
    try:
        fields = parse_infotext(value)
    except ParamsError:
        return
    for key, field_value in fields.items():
        params[f"{INFOTEXT_PREFIX} {key}"] = field_value
    params[f"{INFOTEXT_PREFIX} enable"] = True
