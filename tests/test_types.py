"""The type check CI runs: mypy over ``motion_module/`` and ``lib_animatediff/`` (configured in
``pyproject.toml``, Python 3.10 semantics) reports no error. mypy is a dev requirement, so a
missing mypy fails this test too."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.timeout(300)
def test_mypy_reports_no_error() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "mypy"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    report = result.stdout + result.stderr
    assert result.returncode == 0, f"mypy exited with {result.returncode}:\n{report}"
    assert "Success: no issues found" in report, report
