"""Compatibility shim: sd-webui-controlnet imports ``get_animatediff_arg`` from the original
extension's ``scripts.animatediff_utils`` (no Script here)."""

from lib_animatediff.a1111.compat import get_animatediff_arg

__all__ = ["get_animatediff_arg"]
