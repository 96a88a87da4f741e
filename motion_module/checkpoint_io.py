"""Safe, lazy reading of checkpoint files (``.safetensors``, ``.ckpt``/``.pt``) and their sha256.

A :class:`TensorSource` lists every tensor's shape and dtype (as ``meta`` tensors) before any data
is read, and reads one tensor at a time, so a loader can validate a file first and then convert
tensor by tensor without a full copy in another dtype. Pickled checkpoints are only ever opened
with ``torch.load(weights_only=True)``; a pickle asking for anything else is refused unexecuted.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import stat
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open

from motion_module.errors import MotionModuleError
from motion_module.formats import unwrap_tensors

HASH_CHUNK = 1 << 20
SAFETENSORS_DTYPES = {
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "F32": torch.float32,
    "F64": torch.float64,
    "F8_E4M3": torch.float8_e4m3fn,
    "F8_E5M2": torch.float8_e5m2,
}
WEIGHT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
LFS_MAGIC = b"version https://git-lfs"
ZIP_MAGIC = b"PK\x03\x04"
PICKLE_PROTOCOL_MARK = 0x80
MAX_SAFETENSORS_HEADER = 100_000_000


@dataclass(frozen=True)
class TensorSource:
    """Shapes and dtypes of a checkpoint's tensors (``meta``), and a reader for one tensor at a time."""

    name: str
    meta: dict[str, torch.Tensor]
    read: Callable[[str], torch.Tensor]


def sha256_of(path: str | os.PathLike) -> str:
    """The file's sha256 in hex, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        while chunk := stream.read(HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def check_weight_dtypes(meta: Mapping[str, torch.Tensor], source: str) -> None:
    """Reject float8 and non-floating tensors before anything is read."""
    for key, tensor in meta.items():
        if tensor.dtype in WEIGHT_DTYPES:
            continue
        if "float8" in str(tensor.dtype):
            raise MotionModuleError(
                f"{source}: tensor {key} is stored as {tensor.dtype}; float8 checkpoints are not supported, "
                "use a float16, bfloat16 or float32 file"
            )
        raise MotionModuleError(
            f"{source}: tensor {key} has dtype {tensor.dtype}, expected floating-point weights"
        )


def _sniff(path: Path) -> str:
    """Which reader a file needs, judged from its first bytes (never its suffix): "safetensors" or "torch"."""
    try:
        status = path.stat()
        if not stat.S_ISREG(status.st_mode):
            raise MotionModuleError(f"{path}: not a file (a folder, FIFO or device)")
        if status.st_size == 0:
            raise MotionModuleError(f"{path}: file is empty (0 bytes); the download probably failed")
        with open(path, "rb") as stream:
            head = stream.read(64)
    except FileNotFoundError:
        raise MotionModuleError(f"{path}: file not found") from None
    except OSError as error:
        raise MotionModuleError(f"{path}: cannot be read ({error.strerror or error})") from None
    if len(head) > 8 and head[8:9] == b"{" and struct.unpack("<Q", head[:8])[0] <= MAX_SAFETENSORS_HEADER:
        return "safetensors"
    if head.startswith(ZIP_MAGIC) or head[0] == PICKLE_PROTOCOL_MARK:
        return "torch"
    if head.startswith(LFS_MAGIC):
        raise MotionModuleError(
            f"{path}: is a Git LFS pointer file, not the weights; fetch the real file (git lfs pull)"
        )
    if head.lstrip()[:1] == b"<":
        raise MotionModuleError(
            f"{path}: is an HTML/XML page, not a checkpoint; the download probably failed"
        )
    raise MotionModuleError(f"{path}: is neither a safetensors file nor a PyTorch checkpoint")


def _safetensors_header(path: Path) -> dict:
    size = path.stat().st_size
    with open(path, "rb") as stream:
        (header_size,) = struct.unpack("<Q", stream.read(8))
        if header_size > size - 8:
            raise MotionModuleError(
                f"{path}: truncated safetensors file (header of {header_size} bytes, file {size})"
            )
        try:
            header = json.loads(stream.read(header_size))
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise MotionModuleError(f"{path}: corrupt safetensors header ({error})") from None
    if not isinstance(header, dict):
        raise MotionModuleError(
            f"{path}: malformed safetensors header (a JSON {type(header).__name__}, not an object)"
        )
    header.pop("__metadata__", None)
    for key, entry in header.items():
        _check_header_entry(path, key, entry)
    data_end = max((entry["data_offsets"][1] for entry in header.values()), default=0)
    if 8 + header_size + data_end > size:
        raise MotionModuleError(
            f"{path}: truncated safetensors file: needs {8 + header_size + data_end} bytes, has {size}"
        )
    return header


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _check_header_entry(path: Path, key: str, entry: object) -> None:
    """One tensor's header entry: ``{"dtype": str, "shape": [n, ...], "data_offsets": [begin, end]}``."""
    problem = None
    if not isinstance(entry, dict):
        problem = f"is a JSON {type(entry).__name__}, not an object"
    elif not isinstance(entry.get("dtype"), str):
        problem = "has no dtype"
    elif not (isinstance(entry.get("shape"), list) and all(map(_is_count, entry["shape"]))):
        problem = f"has no valid shape ({entry.get('shape')!r:.60})"
    else:
        offsets = entry.get("data_offsets")
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(map(_is_count, offsets))):
            problem = f"has no valid data_offsets ({offsets!r:.60})"
        elif offsets[0] > offsets[1]:
            problem = f"has data_offsets {offsets} that end before they begin"
    if problem:
        raise MotionModuleError(f"{path}: malformed safetensors header: tensor {key!r:.80} {problem}")


def _guarded_reader(path: Path, read: Callable[[str], torch.Tensor]) -> Callable[[str], torch.Tensor]:
    """``read`` with the safetensors library's errors turned into a ``MotionModuleError`` naming the file."""

    def guarded(key: str) -> torch.Tensor:
        try:
            return read(key)
        except Exception as error:  # SafetensorError and OSError: the file is damaged or was changed
            raise MotionModuleError(f"{path}: tensor {key} cannot be read ({error})") from None

    return guarded


def _open_safetensors(path: Path) -> TensorSource:
    meta = {}
    for key, entry in _safetensors_header(path).items():
        dtype = SAFETENSORS_DTYPES.get(entry["dtype"])
        if dtype is None:
            raise MotionModuleError(
                f"{path}: tensor {key} has dtype {entry['dtype']}, expected floating-point weights"
            )
        meta[key] = torch.empty(entry["shape"], dtype=dtype, device="meta")
    if not meta:
        raise MotionModuleError(f"{path}: contains no tensors, so it is not a motion module")
    check_weight_dtypes(meta, str(path))
    try:
        handle = safe_open(str(path), framework="pt", device="cpu")
    except Exception as error:  # SafetensorError: what the header checks above did not catch
        raise MotionModuleError(f"{path}: malformed safetensors file ({error})") from None
    return TensorSource(str(path), meta, _guarded_reader(path, handle.get_tensor))


def _torch_load(path: Path) -> object:
    """``torch.load`` restricted to weights and never memory-mapped (a malformed pickle refused with
    ``mmap=False`` has been shown to pass with ``mmap=True``). It gets an open file, not the path:
    torch picks a reader by the path's suffix, and the content has already decided that here."""
    try:
        with open(path, "rb") as stream:
            return torch.load(stream, map_location="cpu", weights_only=True, mmap=False)
    except pickle.UnpicklingError as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise MotionModuleError(
            f"{path}: refused to load: the pickle is unsafe (it asks for more than plain tensors: {first_line})"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        raise MotionModuleError(f"{path}: corrupt or truncated PyTorch checkpoint ({error})") from None


def _open_torch(path: Path) -> TensorSource:
    loaded = _torch_load(path)
    if not isinstance(loaded, Mapping):
        raise MotionModuleError(f"{path}: holds a {type(loaded).__name__}, not a state dict")
    return from_state_dict(loaded, str(path))


def from_state_dict(state_dict: Mapping[str, object], name: str = "<state dict>") -> TensorSource:
    """A :class:`TensorSource` over tensors already in memory (``state_dict`` wrapper unwrapped)."""
    tensors = unwrap_tensors(state_dict, name)
    meta = {key: torch.empty(value.shape, dtype=value.dtype, device="meta") for key, value in tensors.items()}
    check_weight_dtypes(meta, name)
    return TensorSource(name, meta, tensors.__getitem__)


def open_checkpoint(path: str | os.PathLike) -> TensorSource:
    """Open a checkpoint file after checking it is a real, whole, safe weights file."""
    path = Path(path)
    return _open_safetensors(path) if _sniff(path) == "safetensors" else _open_torch(path)


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """All tensors of a (small) checkpoint file, on the CPU in their stored dtype."""
    source = open_checkpoint(path)
    return {key: source.read(key) for key in source.meta}
