"""``load_motion_module``: a checkpoint file or state dict in, a validated ``MotionModule`` out.

Everything is checked before the weights are read: the file itself (see
:mod:`motion_module.checkpoint_io`), the key naming and variant (:mod:`motion_module.formats`), and
every key and shape against the module built for that variant. The module is built on the ``meta``
device and each tensor is then read, checked for NaN/Inf and converted on its own straight into
the requested dtype and device.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import torch

from motion_module.checkpoint_io import (
    WEIGHT_DTYPES,
    TensorSource,
    from_state_dict,
    open_checkpoint,
    sha256_of,
)
from motion_module.errors import MotionModuleError
from motion_module.formats import ModuleLayout, check_against, detect_layout, normalize_keys
from motion_module.model import MotionModule, PositionalEncoding

FINITE_CHECK_CHUNK = 1 << 20


def _target(device: torch.device | str | None, dtype: torch.dtype | None) -> torch.device:
    if dtype is not None and dtype not in WEIGHT_DTYPES:
        raise MotionModuleError(
            f"dtype={dtype} is not supported; use one of {', '.join(map(str, WEIGHT_DTYPES))}"
        )
    try:
        return torch.device(device if device is not None else "cpu")
    except (RuntimeError, TypeError) as error:
        raise MotionModuleError(f"device={device!r} is not a valid torch device ({error})") from None


def _all_finite(tensor: torch.Tensor) -> bool:
    """Whether no element is NaN/Inf, from float32 sums over chunks.

    A sum is NaN/Inf exactly when an element is (float32 sums of real weights cannot overflow); on
    the CPU this is several times faster than ``isfinite().all()``, and chunking keeps the float32
    temporaries small.
    """
    sums = [chunk.sum(dtype=torch.float32) for chunk in tensor.reshape(-1).split(FINITE_CHECK_CHUNK)]
    return bool(torch.isfinite(torch.stack(sums)).all())


def _read_checked(source: TensorSource, key: str, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    tensor = source.read(key).to(device=device, dtype=dtype)
    if not _all_finite(tensor):
        raise MotionModuleError(f"{source.name}: tensor {key} contains NaN or Inf values (as {dtype})")
    return tensor


def build_from(source: TensorSource, device: torch.device, dtype: torch.dtype | None) -> MotionModule:
    """Detect, validate and load the module a :class:`TensorSource` holds."""
    normalized, naming = normalize_keys(source.meta)
    file_keys, _ = normalize_keys({key: key for key in source.meta})
    layout = detect_layout(normalized, naming, source.name)
    try:
        with torch.device("meta"):
            mm = MotionModule(
                layout.variant,
                layout.down_channels,
                has_mid_block=layout.has_mid_block,
                pe_length=layout.pe_length,
                pe_in_state_dict=layout.pe_in_state_dict,
                num_attention_blocks=layout.num_attention_blocks,
            )
    except MotionModuleError as error:
        raise MotionModuleError(f"{source.name}: {error}") from None
    expected = {key: value.shape for key, value in mm.state_dict().items()}
    check_against(normalized, expected, source.name)
    if dtype is None:
        dtype = normalized[next(key for key in expected if key.endswith(".weight"))].dtype
    state = {key: _read_checked(source, file_keys[key], device, dtype) for key in expected}
    mm.load_state_dict(state, strict=True, assign=True)
    for module in mm.modules():
        if isinstance(module, PositionalEncoding):
            module.pe = module.pe.to(device=device, dtype=dtype)
    return mm.eval()


def _open(path_or_state_dict: str | os.PathLike | Mapping[str, object]) -> TensorSource:
    if isinstance(path_or_state_dict, Mapping):
        return from_state_dict(path_or_state_dict)
    return open_checkpoint(path_or_state_dict)


def inspect_checkpoint(path_or_state_dict: str | os.PathLike | Mapping[str, object]) -> ModuleLayout:
    """Variant, channels, mid block, PE length and naming of a checkpoint, from its keys and shapes only.

    Cheap (no weights are read, no module is built), so it suits model listings; it does not check
    every key and value the way :func:`load_motion_module` does.
    """
    source = _open(path_or_state_dict)
    normalized, naming = normalize_keys(source.meta)
    return detect_layout(normalized, naming, source.name)


def detect_variant(path_or_state_dict: str | os.PathLike | Mapping[str, object]) -> str:
    """The variant name ("v1", "v2", "v3", "animatelcm", "sdxl", "hotshotxl") of a checkpoint."""
    return inspect_checkpoint(path_or_state_dict).variant


def load_motion_module(
    path_or_state_dict: str | os.PathLike | Mapping[str, object],
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> MotionModule:
    """Load a motion module of any supported variant and naming.

    ``dtype`` None keeps the file's weight dtype; ``device`` None means the CPU. ``sha256`` and
    ``short_hash`` are set when loading from a file. Raises :class:`MotionModuleError` naming the
    file and the problem for anything that is not a whole, safe, known motion-module checkpoint.
    """
    target = _target(device, dtype)
    mm = build_from(_open(path_or_state_dict), target, dtype)
    if isinstance(path_or_state_dict, Mapping):
        return mm
    mm.sha256 = sha256_of(path_or_state_dict)
    mm.short_hash = mm.sha256[:8]
    return mm
