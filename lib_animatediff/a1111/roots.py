"""Where the files an A1111 request names may lie.

Paths of API requests may only lie inside A1111's data and models folders (symlinks followed); UI
requests read the local user's own files and Gradio's uploads, so they are not confined.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def allowed_roots(p: Any) -> list[Path] | None:
    """Folders a request's files may lie in: A1111's data and models folders for the API, else anywhere."""
    if not getattr(p, "is_api", False):
        return None
    from modules import paths

    return [Path(paths.data_path), Path(paths.models_path)]
