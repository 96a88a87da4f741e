"""Mirrors A1111 ``modules/hashes.py``: file sha256, cached per title (here in memory)."""

from __future__ import annotations

import hashlib
import os

_cache: dict[str, tuple[float, str]] = {}
calls: list[str] = []


def sha256(filename: str, title: str, use_addnet_hash: bool = False) -> str:
    """Hex sha256 of ``filename``, cached under ``title`` until the file's mtime changes."""
    calls.append(title)
    mtime = os.path.getmtime(filename)
    cached = _cache.get(title)
    if cached and cached[0] == mtime:
        return cached[1]
    digest = hashlib.sha256()
    with open(filename, "rb") as file:
        for chunk in iter(lambda: file.read(1 << 20), b""):
            digest.update(chunk)
    _cache[title] = (mtime, digest.hexdigest())
    return _cache[title][1]
