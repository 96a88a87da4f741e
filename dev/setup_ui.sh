#!/usr/bin/env bash
# UI test set-up: a separate venv (.venv-ui) holding A1111 1.10.1's UI stack (gradio 3.41.2 with the
# fastapi/pydantic/httpx/numpy pins it launches with, and OpenCV as A1111 has it) plus pytest and
# selenium, and Debian's chromium + chromedriver. Kept apart from .venv: gradio 3 needs pydantic 1,
# numpy 1 and an old fastapi.
# The pins also keep pip's resolver from backtracking (h11 0.12 is what httpcore 0.15 accepts).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv-ui/bin/python ] || "$PY" -m venv .venv-ui
# fast no-op when the venv is already complete
if ! .venv-ui/bin/python -c 'from importlib.metadata import version as v
assert v("gradio") == "3.41.2" and v("selenium") and v("opencv-python-headless") and v("pytest-timeout")' 2>/dev/null; then
  .venv-ui/bin/python -m pip install --quiet --disable-pip-version-check \
      gradio==3.41.2 gradio_client==0.5.0 fastapi==0.94.0 "pydantic<2" httpx==0.24.1 httpcore==0.15.0 \
      h11==0.12.0 "wsproto<1.3" "huggingface_hub<1" numpy==1.26.2 Pillow==9.5.0 \
      "opencv-python-headless<4.12" pytest pytest-timeout selenium
fi
if ! { command -v chromium && command -v chromedriver; } >/dev/null 2>&1; then
    SUDO=""
    [ "$(id -u)" = 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends chromium chromium-driver
fi
