#!/usr/bin/env bash
# Fresh-machine set-up for development, tests and the standalone runner: a venv in .venv.
# torch is installed first at the exact version whose CPU wheel lies on local disk
# (any other torch request would download a multi-GB CUDA build).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
PIP=".venv/bin/python -m pip install --quiet --disable-pip-version-check"
$PIP torch==2.13.0
$PIP -r dev/requirements.txt
# The ldm UNet (the very class A1111 runs) and k-diffusion's samplers; their declared
# dependencies pull training-only packages (and another torch), so they go in without them.
$PIP --no-deps stable-diffusion-sdkit==2.1.5 k-diffusion==0.1.1.post1
# Debian packages: gifsicle (optional GIF optimisation pass, tested when present), chromium and
# chromedriver (UI tests). Installed only when missing.
if ! { command -v gifsicle && command -v chromium && command -v chromedriver; } >/dev/null 2>&1; then
    SUDO=""
    [ "$(id -u)" = 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
        gifsicle chromium chromium-driver
fi
# The UI tests' own venv (A1111 1.10's gradio 3.41.2 stack) and Debian's chromium.
bash dev/setup_ui.sh
# The Python 3.10 venv the A1111-facing tests also run in (A1111 1.10 runs on 3.10).
bash dev/setup_py310.sh
