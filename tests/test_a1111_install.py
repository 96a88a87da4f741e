"""install.py (run by A1111's launcher) installs only what is missing, and preload.py's flags."""

from __future__ import annotations

import argparse
import runpy
import sys
import types
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run_installer(monkeypatch: pytest.MonkeyPatch, installed: set[str]) -> list[str]:
    pip_calls: list[str] = []
    launch = types.ModuleType("launch")
    launch.is_installed = lambda name: name in installed
    launch.run_pip = lambda command, description: pip_calls.append(command)
    monkeypatch.setitem(sys.modules, "launch", launch)
    runpy.run_path(str(ROOT / "install.py"))
    return pip_calls


def test_a_missing_package_is_installed(monkeypatch) -> None:
    assert run_installer(monkeypatch, set()) == ["install imageio-ffmpeg"]


def test_nothing_is_installed_when_everything_is_present(monkeypatch) -> None:
    assert run_installer(monkeypatch, {"imageio-ffmpeg"}) == []


def test_preload_adds_the_model_path_and_log_level_flags() -> None:
    preload = runpy.run_path(str(ROOT / "preload.py"))["preload"]
    parser = argparse.ArgumentParser()
    preload(parser)
    args = parser.parse_args(["--animatediff-model-path", "/m", "--animatediff-loglevel", "debug"])
    assert (args.animatediff_model_path, args.animatediff_loglevel) == ("/m", "DEBUG")
    with pytest.raises(SystemExit):
        parser.parse_args(["--animatediff-loglevel", "loud"])
