"""The extension loads on A1111 1.10 and stops with a clear message on older WebUIs (whose APIs are
reproduced here by taking the 1.10 additions out of the fake host)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fake_webui.harness import load_extension, load_script_module
from tests.fake_webui.host import install

pytestmark = pytest.mark.fakehost


def test_it_loads_on_the_1_10_host(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert load_extension(monkeypatch, tmp_path).script_module.AnimateDiffScript


@pytest.mark.parametrize("release", ["1.8", "1.9"])
def test_an_older_webui_gets_a_message_naming_what_it_lacks(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, release: str
) -> None:
    host = install(monkeypatch, tmp_path)
    monkeypatch.delattr(host.scripts.Script, "process_before_every_sampling")  # new in 1.10
    if release == "1.8":
        registered = host.script_callbacks.on_cfg_denoiser

        def on_cfg_denoiser(callback):  # 1.8 has no name= keyword
            registered(callback)

        monkeypatch.setattr(host.script_callbacks, "on_cfg_denoiser", on_cfg_denoiser)
    with pytest.raises(ImportError, match=r"needs AUTOMATIC1111 WebUI 1\.10\.0 - 1\.10\.1") as caught:
        load_script_module(monkeypatch)
    assert "process_before_every_sampling" in str(caught.value)
    assert ("name= keyword" in str(caught.value)) is (release == "1.8")
