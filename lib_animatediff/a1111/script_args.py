"""The AnimateDiff script's arguments as params, and the request errors A1111's API answers with 422.

``/sdapi/v1/txt2img|img2img`` with ``"alwayson_scripts": {"AnimateDiff": {"args": [...]}}`` (A1111
matches the title case-insensitively): the first argument may be a dict of fields (what the
original and the ``webuiapi`` client send) or the arguments may be the accordion's positional list.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from lib_animatediff.a1111.paths import confine
from lib_animatediff.coercion import as_bool
from lib_animatediff.params import AnimateDiffParams

PATH_FIELDS = ("video_source", "video_path", "mask_path")
"""Request fields naming server-side files or folders (``model`` is confined to the model folder
by ``model_cache.resolve_model``, ``request_id`` to a file-name part by the params' own check)."""


class RequestError(ValueError):
    """A request AnimateDiff cannot run; A1111's API answers it with HTTP 422 and this message.

    A1111's API error handler reads ``status_code`` and ``detail`` from the exception's instance
    attributes (``vars(e)``), so both are set per instance.
    """

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.status_code = 422
        self.detail = message
        self.field = field

    @classmethod
    def from_error(cls, error: Exception) -> RequestError:
        """Wrap a ``ParamsError`` / ``MotionModuleError`` (keeps the message and the field name)."""
        if isinstance(error, RequestError):
            return error
        return cls(str(error), field=getattr(error, "field", None))


ENABLE_SLOT = AnimateDiffParams.FIELDS.index("enable")  # in the accordion's positional values


def requested_enable(args: Sequence[Any]) -> Any:
    """The ``enable`` value of the script's arguments (a dict, our params or the positional list)."""
    first = args[0] if args else None
    if isinstance(first, AnimateDiffParams):
        return first.enable
    if isinstance(first, Mapping):
        return first.get("enable", AnimateDiffParams.enable)
    return args[ENABLE_SLOT] if len(args) > ENABLE_SLOT else AnimateDiffParams.enable


def turns_on(value: Any) -> bool:
    """Whether an ``enable`` value switches AnimateDiff on: ``True`` or the text ``true`` only."""
    return value is True or (isinstance(value, str) and value.strip().lower() == "true")


def parse_script_args(
    args: Sequence[Any],
    *,
    is_img2img: bool,
    default_format: Sequence[str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    roots: Sequence[Path] | None = None,
) -> AnimateDiffParams:
    """The script's arguments as params: a dict in the first slot (API) or the positional UI list,
    with ``overrides`` (an X/Y/Z plot cell's values) put over them.

    Arguments that do not turn AnimateDiff on give the disabled defaults without being read any
    further: A1111's API fills the arguments of every script a request does not name from the
    accordion's default values (``init_default_script_args``), and such a request must run as if
    the extension were absent, whatever those values are. An API dict with an ``enable`` that is
    neither a boolean nor ``true``/``false`` is an error. With ``roots`` (API requests), every
    path field must name something inside them (``ParamsError`` naming the field).
    """
    overrides = overrides or {}
    enable = overrides["enable"] if "enable" in overrides else requested_enable(args)
    if not turns_on(enable):
        if args and isinstance(args[0], Mapping) and "enable" not in overrides:
            as_bool("enable", enable)
        return AnimateDiffParams()
    if args and isinstance(args[0], AnimateDiffParams):
        params = args[0]
    elif args and isinstance(args[0], Mapping):
        params = AnimateDiffParams.from_api(args[0], default_format=default_format)
    else:
        params = AnimateDiffParams.from_ui(list(args), is_img2img=is_img2img)
    params = dataclasses.replace(params, **overrides) if overrides else params
    for field in PATH_FIELDS:
        if roots is not None and getattr(params, field):
            confine(field, getattr(params, field), roots)
    return params
