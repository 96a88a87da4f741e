"""Runs the gradio UI tests from the main venv, in ``.venv-ui``.

gradio 3.41.2 (A1111 1.10's) needs pydantic 1, numpy 1 and fastapi 0.94, which the main venv cannot hold,
so ``dev/setup_ui.sh`` puts it, selenium and Debian's chromium in a venv of their own. Each UI test file
runs there in a subprocess; its failures fail this test and its skips (with their reasons) skip it.
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
UI_PYTHON = ROOT / ".venv-ui" / "bin" / "python"

pytestmark = [
    pytest.mark.skipif(
        importlib.util.find_spec("gradio") is not None,
        reason="gradio is installed here: the UI tests run directly",
    ),
    pytest.mark.skipif(not UI_PYTHON.exists(), reason=".venv-ui is missing: run bash dev/setup_ui.sh"),
]


@pytest.mark.timeout(240)
@pytest.mark.parametrize("test_file", ["tests/test_ui_layout.py", "tests/test_ui_browser.py"])
def test_ui_tests_pass_in_the_ui_venv(test_file):
    command = [
        str(UI_PYTHON),
        "-m",
        "pytest",
        "-q",
        "-rs",
        "--noconftest",
        "-p",
        "no:cacheprovider",
        test_file,
    ]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=230)
    report = result.stdout[-6000:] + result.stderr[-2000:]
    assert result.returncode == 0, report
    summary = result.stdout.strip().splitlines()[-1]
    if "skipped" in summary:
        reasons = re.findall(r"^SKIPPED \[\d+\] (.*)$", result.stdout, flags=re.MULTILINE)
        pytest.skip(f"{test_file} in .venv-ui: {summary}; " + "; ".join(reasons))
    assert re.search(r"\d+ passed", summary), report
