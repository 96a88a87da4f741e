"""Confining the file and folder names an API request gives to the folders it may use.

The check is on the *name*: ``..``, absolute paths and anything else that would point outside the
allowed roots are refused, with a ``ParamsError`` naming the field. Links are not followed for the
check: a model file or folder that the admin linked into the model folder from elsewhere (users
share model folders between UIs) is an ordinary entry of that folder.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lib_animatediff.coercion import ParamsError


def confine(
    field: str,
    value: Any,
    roots: Sequence[str | os.PathLike[str]],
    *,
    base: str | os.PathLike[str] | None = None,
) -> Path:
    """``value`` as an absolute path (``..`` folded, links kept) that lies inside one of ``roots``;
    a relative ``value`` is taken relative to ``base`` (default: the working directory)."""
    if not isinstance(value, str) or not value.strip():
        raise ParamsError(field, value, "expected a non-empty path")
    if "\x00" in value:
        raise ParamsError(field, value, "contains a NUL character")
    start = Path(base if base is not None else os.getcwd())
    path = Path(os.path.normpath(start / value))
    allowed = [Path(os.path.abspath(root)) for root in roots]
    if not any(path == root or root in path.parents for root in allowed):
        raise ParamsError(field, value, f"is outside the allowed folders ({', '.join(map(str, allowed))})")
    return path
