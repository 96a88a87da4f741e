"""AnimateDiff over A1111's HTTP API: script arguments, errors as HTTP 422, result images, routes.

``/sdapi/v1/txt2img|img2img`` with ``"alwayson_scripts": {"AnimateDiff": {"args": [...]}}`` (A1111
matches the title case-insensitively): the first argument may be a dict of fields (what the
original and the ``webuiapi`` client send) or the arguments may be the accordion's positional list.
Extra routes: ``GET /animatediff/v1/version`` and ``GET /animatediff/v1/models``.
"""

from __future__ import annotations

import base64
import dataclasses
import functools
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from lib_animatediff.coercion import as_bool
from lib_animatediff.options import VIDEO_FORMATS
from lib_animatediff.params import AnimateDiffParams

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"


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
) -> AnimateDiffParams:
    """The script's arguments as params: a dict in the first slot (API) or the positional UI list,
    with ``overrides`` (an X/Y/Z plot cell's values) put over them.

    Arguments that do not turn AnimateDiff on give the disabled defaults without being read any
    further: A1111's API fills the arguments of every script a request does not name from the
    accordion's default values (``init_default_script_args``), and such a request must run as if
    the extension were absent, whatever those values are. An API dict with an ``enable`` that is
    neither a boolean nor ``true``/``false`` is an error.
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
    return dataclasses.replace(params, **overrides) if overrides else params


def encode_file(path: Path) -> str:
    """A file's bytes as base64 text (A1111's ``encode_pil_to_base64`` passes strings through)."""
    return base64.b64encode(path.read_bytes()).decode("ascii")


def result_images(
    videos: Sequence[Sequence[Path]], frames: Sequence[Any], formats: Sequence[str]
) -> list[Any]:
    """The API's ``images``: base64 of each video file (GIF, MP4, WEBP, WEBM), then ``frames`` if
    ``Frame`` was asked for (as the original)."""
    encoded = [
        encode_file(path)
        for files in videos
        for kind in VIDEO_FORMATS
        for path in files
        if path.suffix.lower() == f".{kind.lower()}"
    ]
    return encoded + (list(frames) if "Frame" in formats else [])


@functools.cache
def version() -> str:
    """This extension's version (from its ``pyproject.toml``)."""
    match = re.search(r'^version\s*=\s*"([^"]+)"', PYPROJECT.read_text(encoding="utf-8"), re.MULTILINE)
    return match.group(1) if match else "unknown"


def describe_models(root: Path) -> list[dict[str, Any]]:
    """Every motion-module file under ``root`` with its variant (when recognisable) and hashes."""
    from lib_animatediff.a1111.model_cache import file_sha256, list_models
    from motion_module import MotionModuleError, detect_variant

    described = []
    for name in list_models(root):
        path = root / name
        try:
            variant = detect_variant(path)
        except (MotionModuleError, OSError):
            variant = None
        sha256 = file_sha256(path, name)
        described.append({"name": name, "variant": variant, "sha256": sha256, "hash": sha256[:8]})
    return described


def register_routes(_demo: Any, app: Any) -> None:
    """``on_app_started`` callback: add the namespaced AnimateDiff routes to A1111's FastAPI app."""
    from lib_animatediff.a1111.model_cache import model_dir

    def get_version() -> dict[str, str]:
        return {"version": version()}

    def get_models() -> dict[str, Any]:
        return {"model_dir": str(model_dir()), "models": describe_models(model_dir())}

    app.add_api_route("/animatediff/v1/version", get_version, methods=["GET"])
    app.add_api_route("/animatediff/v1/models", get_models, methods=["GET"])
