"""AnimateDiff's own HTTP routes on A1111's FastAPI app: ``GET /animatediff/v1/version`` and
``GET /animatediff/v1/models``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lib_animatediff.version import version


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
