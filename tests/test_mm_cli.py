"""``python -m motion_module info FILE``."""

from __future__ import annotations

import hashlib
import runpy
import sys
from pathlib import Path

import pytest
import torch

from motion_module.__main__ import main
from tests.fixtures.mm_checkpoints import make_state_dict, write_checkpoint


def info_lines(text: str) -> dict[str, str]:
    return dict(line.split(": ", 1) for line in text.strip().splitlines())


@pytest.mark.parametrize(
    ("variant", "dtype", "expected"),
    [
        ("v2", torch.float16, {"variant": "v2", "family": "SD1.5", "pe length": "32", "mid block": "yes"}),
        (
            "hotshotxl",
            torch.float32,
            {"variant": "hotshotxl", "family": "SDXL", "pe length": "24", "mid block": "no"},
        ),
    ],
)
def test_info_prints_the_facts(
    tmp_path: Path, capsys: pytest.CaptureFixture, variant: str, dtype: torch.dtype, expected: dict[str, str]
) -> None:
    state = make_state_dict(
        variant, dtype=dtype, channels=(32, 32, 32) if variant == "hotshotxl" else (32,) * 4
    )
    path = write_checkpoint(tmp_path / f"{variant}.safetensors", state)
    assert main(["info", str(path)]) == 0
    lines = info_lines(capsys.readouterr().out)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    parameters = sum(v.numel() for k, v in state.items() if not k.endswith(".pe"))
    assert lines["file"] == str(path)
    assert {key: lines[key] for key in expected} == expected
    assert lines["parameters"] == f"{parameters:,}"
    assert lines["dtype"] == str(dtype).removeprefix("torch.")
    assert (lines["sha256"], lines["short hash"]) == (digest, digest[:8])
    assert lines["cross-frame groupnorm"] == ("yes" if variant == "hotshotxl" else "no")


@pytest.mark.filterwarnings("ignore:'motion_module.__main__' found in sys.modules:RuntimeWarning")
def test_info_error_exits_2_with_a_clear_message(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "broken.ckpt"
    path.write_bytes(b"<html>Not Found</html>")
    monkeypatch.setattr(sys, "argv", ["motion_module", "info", str(path)])
    with pytest.raises(SystemExit) as exited:
        runpy.run_module("motion_module", run_name="__main__", alter_sys=True)
    assert exited.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith(f"error: {path}: is an HTML/XML page")


def test_usage_error_without_a_command(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exited:
        main([])
    assert exited.value.code == 2
    assert "info" in capsys.readouterr().err
