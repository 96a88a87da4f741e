"""The accordion in a real browser: gradio 3.41.2 (A1111 1.10's UI stack) served on 127.0.0.1, driven in
headless Debian Chromium through selenium + chromedriver.

A fake "Generate" button is wired like A1111 wires a Script's components: its click sends the
accordion's values, positionally, to a Python function, which records them as the Script would
receive them and echoes what ``AnimateDiffParams.from_ui`` makes of them.

Needs ``.venv-ui`` (``bash dev/setup_ui.sh``); from the main venv it runs through ``test_ui_venv.py``.
Set ``ANIMATEDIFF_UI_SCREENSHOT=path.png`` to keep the screenshot.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import socket
from pathlib import Path

import pytest

gr = pytest.importorskip(
    "gradio", reason="gradio lives in .venv-ui; tests/test_ui_venv.py runs this file there"
)
webdriver = pytest.importorskip("selenium.webdriver", reason="selenium lives in .venv-ui (dev/setup_ui.sh)")

from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

from lib_animatediff.a1111.ui import AnimateDiffUI  # noqa: E402
from lib_animatediff.params import AnimateDiffParams  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")
CHROMIUM_FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
    "--disable-dev-shm-usage",
    "--window-size=1280,1500",
]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.timeout(120),
    pytest.mark.skipif(
        not (CHROMIUM and CHROMEDRIVER), reason="chromium / chromedriver not installed (bash dev/setup_ui.sh)"
    ),
]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _page_setup_js() -> str:
    """What A1111 does for an extension's javascript/: provide ``onUiLoaded`` and run hints.js."""
    hints = (ROOT / "javascript" / "hints.js").read_text()
    return "() => {\nwindow.onUiLoaded = (callback) => callback();\n" + hints + "\n}"


@pytest.fixture
def served(tmp_path, monkeypatch):
    """The txt2img accordion plus a fake Generate button, served; yields (url, received values)."""
    monkeypatch.setenv("GRADIO_ANALYTICS_ENABLED", "False")
    model_dir = tmp_path / "model"
    (model_dir / "v3").mkdir(parents=True)
    (model_dir / "mm_sd_v15_v2.ckpt").write_bytes(b"")
    (model_dir / "v3" / "mm_sd15_v3.safetensors").write_bytes(b"")
    received: list[tuple] = []

    def receive(*values):
        received.append(values)
        return json.dumps(AnimateDiffParams.from_ui(values, is_img2img=False).to_api())

    with gr.Blocks(css=(ROOT / "style.css").read_text(), analytics_enabled=False) as demo:
        components = AnimateDiffUI(False, model_dir=lambda: model_dir).render()
        generate = gr.Button("Generate", elem_id="fake-generate")
        echo = gr.Textbox(label="Script received", elem_id="fake-received")
        generate.click(receive, inputs=components, outputs=[echo])
        demo.load(None, None, None, _js=_page_setup_js())
    port = _free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    try:
        yield f"http://127.0.0.1:{port}/", received
    finally:
        demo.close()


@pytest.fixture
def browser(tmp_path):
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in [*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'chromium-profile'}"]:
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def _element(driver, css: str):
    return WebDriverWait(driver, 30).until(lambda d: d.find_element(By.CSS_SELECTOR, css))


def _choice(driver, group_id: str, text: str):
    """The checkbox/radio input of the option labelled ``text`` inside ``#group_id``."""
    xpath = f"//*[@id='{group_id}']//label[normalize-space(.)='{text}']//input"
    return driver.find_element(By.XPATH, xpath)


def test_accordion_values_reach_the_script(served, browser, tmp_path):
    url, received = served
    browser.get(url)
    accordion = _element(browser, "#animatediff-txt2img-accordion")
    enable = browser.find_element(By.CSS_SELECTOR, "#animatediff-txt2img-enable input")
    assert not enable.is_displayed(), "the accordion starts closed"

    accordion.find_element(By.CSS_SELECTOR, ".label-wrap").click()
    WebDriverWait(browser, 10).until(lambda d: enable.is_displayed())
    assert "frames per second" in browser.find_element(By.ID, "animatediff-txt2img-fps").get_attribute(
        "title"
    )

    enable.click()
    WebDriverWait(browser, 10).until(lambda d: "animatediff-enabled" in accordion.get_attribute("class"))
    frames = browser.find_element(By.CSS_SELECTOR, "#animatediff-txt2img-video-length input")
    frames.send_keys(Keys.CONTROL, "a")
    frames.send_keys("24", Keys.TAB)
    _choice(browser, "animatediff-txt2img-format", "MP4").click()
    _choice(browser, "animatediff-txt2img-format", "PNG").click()
    _choice(browser, "animatediff-txt2img-interp", "Optical flow").click()
    _choice(browser, "animatediff-txt2img-fuse-method", "gauss").click()

    browser.find_element(By.ID, "fake-generate").click()
    echo = _element(browser, "#fake-received textarea")
    WebDriverWait(browser, 30).until(lambda d: echo.get_attribute("value"))
    screenshot = Path(os.environ.get("ANIMATEDIFF_UI_SCREENSHOT") or tmp_path / "accordion.png")
    assert browser.save_screenshot(str(screenshot))

    assert len(received) == 1
    values = received[0]
    assert len(values) == 24
    assert values[2] == 24 and isinstance(values[2], int), "Number of frames arrives as an int"
    expected = dataclasses.replace(
        AnimateDiffParams(),
        model="v3/mm_sd15_v3.safetensors",
        enable=True,
        video_length=24,
        format=("GIF", "MP4"),
        interp="Optical flow",
        fuse_method="gauss",
    )
    assert AnimateDiffParams.from_ui(values, is_img2img=False) == expected
    assert json.loads(echo.get_attribute("value")) == expected.to_api()
