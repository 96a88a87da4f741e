"""Mirrors A1111 ``modules/paths.py`` (and ``paths_internal.py``): the host's folders.

The fixture points them into a temporary directory.
"""

from __future__ import annotations

script_path = "."
models_path = "models"
data_path = "."
