"""Compatibility shim: sd-webui-controlnet's img2img-batch hijack imports
``animatediff_i2i_batch`` from this module path (the original extension's). Our implementation
lives in :mod:`lib_animatediff.a1111.i2i_batch`."""

from lib_animatediff.a1111.i2i_batch import animatediff_i2i_batch

__all__ = ["animatediff_i2i_batch"]
