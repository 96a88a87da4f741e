"""Shared pytest fixtures: motion-module checkpoint files and state dicts (tests.fixtures.mm_checkpoints)."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from tests.fixtures.mm_checkpoints import make_state_dict, write_checkpoint

# The test machines are small and shared: intra-op threads only add contention for tiny tensors.
torch.set_num_threads(1)

# The gradio UI tests need A1111's gradio 3.41.2 stack, which lives in .venv-ui: where gradio is absent,
# tests/test_ui_venv.py runs them there instead of collecting them here.
if importlib.util.find_spec("gradio") is None:
    collect_ignore = ["test_ui_layout.py", "test_ui_browser.py"]


@pytest.fixture
def mm_file(tmp_path: Path) -> Callable[..., Path]:
    """``mm_file(variant, fmt="safetensors", naming="original", dtype=float32, wrap=False)`` -> a written file."""

    def write(
        variant: str,
        fmt: str = "safetensors",
        *,
        naming: str = "original",
        dtype: torch.dtype = torch.float32,
        wrap: bool = False,
        seed: int = 0,
    ) -> Path:
        state = make_state_dict(variant, naming=naming, dtype=dtype, seed=seed)
        suffix = "safetensors" if fmt == "safetensors" else "ckpt"
        path = tmp_path / f"{variant}_{naming}_{seed}.{suffix}"
        return write_checkpoint(path, state, fmt, wrap_state_dict=wrap)

    return write
