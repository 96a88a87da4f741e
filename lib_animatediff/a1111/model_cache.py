"""Motion-module files for A1111: the model folder, names confined to it, listing, and a load cache.

The folder is, in order: the ``--animatediff-model-path`` flag, the ``animatediff_model_path``
setting, ``<extension>/model``. Names are paths relative to it; a name that would leave it
(absolute paths, ``..``) is refused with a ``ParamsError`` naming ``model``, while links the admin
put into the folder are followed. Listing and hashing see regular files only (never a FIFO or a
device), and hashes are cached by (size, mtime). One motion module is kept loaded, keyed by file path and sha256 (A1111's cached
``hashes.sha256``), so a changed file is reloaded and a renamed copy is not loaded twice.
"""

from __future__ import annotations

import gc
import os
import stat
from pathlib import Path
from typing import Any

import torch

from lib_animatediff.a1111.paths import confine
from lib_animatediff.options import MODEL_SUFFIXES
from lib_animatediff.params import ParamsError

EXTENSION_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_MODEL_DIR = EXTENSION_ROOT / "model"


def model_dir() -> Path:
    """The motion-module folder currently configured (see the module docstring)."""
    from modules import shared

    from lib_animatediff.a1111 import settings

    flag = getattr(shared.cmd_opts, "animatediff_model_path", None)
    configured = flag or settings.get("animatediff_model_path")
    return Path(configured) if configured else DEFAULT_MODEL_DIR


def resolve_model(name: str, root: Path) -> Path:
    """The file ``name`` names inside ``root``; ``ParamsError`` if the name leaves the folder, or the
    entry is missing or not a regular model file. Links the admin put into the folder are followed."""
    if not isinstance(name, str) or not name or "\\" in name or Path(name).is_absolute():
        raise ParamsError("model", name, f"expected a file name relative to the motion-module folder {root}")
    if ".." in Path(name).parts:
        raise ParamsError("model", name, "must not contain '..'")
    path = confine("model", name, [root], base=root.absolute())
    if path.suffix.lower() not in MODEL_SUFFIXES:
        raise ParamsError("model", name, f"expected one of {', '.join(MODEL_SUFFIXES)}")
    try:
        regular = stat.S_ISREG(path.stat().st_mode)
    except FileNotFoundError:
        raise ParamsError("model", name, f"no such motion-module file in {root}; download it there") from None
    except OSError as error:
        raise ParamsError("model", name, f"cannot be read ({error.strerror or error})") from None
    if not regular:
        raise ParamsError("model", name, "is not a regular file")
    return path


def _is_regular(path: Path) -> bool:
    """Whether ``path`` is (or links to) a regular file; FIFOs and devices would block or never end."""
    try:
        return stat.S_ISREG(path.stat().st_mode)
    except OSError:
        return False


def list_models(root: Path) -> list[str]:
    """Regular model files under ``root`` (recursive, hidden entries skipped) as sorted POSIX relative paths."""
    names = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        names += [
            Path(folder, f).relative_to(root).as_posix()
            for f in files
            if not f.startswith(".") and f.lower().endswith(MODEL_SUFFIXES) and _is_regular(Path(folder, f))
        ]
    return sorted(names)


_hashes: dict[str, tuple[tuple[int, int], str]] = {}


def file_sha256(path: Path, name: str) -> str:
    """The sha256 of regular file ``path``, cached here by (size, mtime) and in A1111's hash cache
    (title ``AnimateDiff/<name>``, as the original). ``ParamsError`` for anything else."""
    from modules import hashes

    try:
        status = path.stat()
    except OSError as error:
        raise ParamsError("model", name, f"cannot be read ({error.strerror or error})") from None
    if not stat.S_ISREG(status.st_mode):
        raise ParamsError("model", name, "is not a regular file")
    key = (status.st_size, status.st_mtime_ns)
    cached = _hashes.get(str(path))
    if cached is None or cached[0] != key:
        _hashes[str(path)] = (key, hashes.sha256(str(path), f"AnimateDiff/{name}"))
    return _hashes[str(path)][1]


class MotionModuleCache:
    """Keeps the last loaded motion module; reloads when the path or the file's hash changes."""

    def __init__(self) -> None:
        self._key: tuple[str, str] | None = None
        self._module: Any = None

    @property
    def loaded(self) -> Any:
        """The cached motion module, or None."""
        return self._module

    def get(self, name: str, *, device: torch.device, dtype: torch.dtype) -> Any:
        """The motion module ``name`` (relative to :func:`model_dir`) on ``device`` in ``dtype``."""
        from motion_module import load_motion_module

        root = model_dir()
        path = resolve_model(name, root)
        key = (str(path), file_sha256(path, name))
        if key != self._key:
            self.remove()
            self._module = load_motion_module(path, device="cpu").eval()
            self._key = key
        return self._module.to(device=device, dtype=dtype)

    def offload(self) -> None:
        """Move the cached module to the CPU (the original's "Move motion module to CPU")."""
        from modules import devices

        if self._module is not None:
            self._module.to(devices.cpu)
        devices.torch_gc()

    def remove(self) -> None:
        """Drop the cached module from every memory."""
        from modules import devices

        self._module = None
        self._key = None
        gc.collect()
        devices.torch_gc()


def keep_on_cpu(sd_model: Any) -> bool:
    """Whether the motion module should leave the GPU between generations (--lowvram/--medvram or the setting)."""
    from modules import lowvram

    from lib_animatediff.a1111 import settings

    return lowvram.is_enabled(sd_model) or bool(settings.get("animatediff_mm_on_cpu"))


cache = MotionModuleCache()
