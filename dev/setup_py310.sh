#!/usr/bin/env bash
# Python 3.10 test venv (.venv310): A1111 1.10 runs on Python 3.10, so the A1111-facing tests also run
# there (tests/test_python310.py). torch 2.13.0 for 3.10 comes from PyPI (its CUDA build, ~3 GB, which
# runs on the CPU); the rest as in .venv (diffusers at its newest release for 3.10). Finds 3.10 as $PYTHON310, python3.10 or a pyenv version;
# without one it says so and stops (the test then reports that no 3.10 interpreter exists here).
# `bash dev/setup_py310.sh --find` only prints the interpreter (exit status 1 when there is none).
set -euo pipefail
cd "$(dirname "$0")/.."

is_py310() { "$1" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 10))' >/dev/null 2>&1; }

find_py310() {
    local candidate
    for candidate in "${PYTHON310:-}" python3.10 "$(pyenv root 2>/dev/null)"/versions/3.10*/bin/python3.10 \
        "$HOME"/.pyenv/versions/3.10*/bin/python3.10 /usr/local/bin/python3.10 /usr/bin/python3.10; do
        if [ -n "$candidate" ] && is_py310 "$candidate"; then
            command -v "$candidate"
            return 0
        fi
    done
    return 1
}

if [ "${1:-}" = "--find" ]; then
    find_py310
    exit
fi
if [ -x .venv310/bin/python ] && .venv310/bin/python -c 'import torch, diffusers, ldm, k_diffusion' 2>/dev/null; then
    exit 0
fi
if ! PY310=$(find_py310); then
    echo "dev/setup_py310.sh: no Python 3.10 interpreter found (set PYTHON310); .venv310 not created" >&2
    exit 0
fi
[ -x .venv310/bin/python ] || "$PY310" -m venv .venv310
PIP=".venv310/bin/python -m pip install --quiet --disable-pip-version-check"
$PIP --upgrade pip
$PIP torch==2.13.0
# the same packages as .venv; diffusers is pinned there to a release that needs Python 3.11, so here
# pip takes the newest one that runs on 3.10
$PIP -r <(sed 's/^diffusers==.*/diffusers/' dev/requirements.txt)
$PIP --no-deps stable-diffusion-sdkit==2.1.5 k-diffusion==0.1.1.post1
