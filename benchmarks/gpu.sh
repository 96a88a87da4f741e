#!/usr/bin/env bash
# The runner benchmarks (windows, memory, vs_diffusers) at the real SD1.5 + v3 motion-module shapes
# (random weights, no downloads), 512x512, 16 frames, fp16 on CUDA when a GPU is visible; otherwise
# the same scripts on the tiny models on the CPU, so the script can be checked anywhere.
#
#   bash benchmarks/gpu.sh            # auto
#   DEVICE=cpu bash benchmarks/gpu.sh # force the CPU run
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-.venv/bin/python}"
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-PASSIVE}"

DEVICE="${DEVICE:-$("$PYTHON" -c 'import torch; print("cuda" if torch.cuda.is_available() else "cpu")')}"
if [[ "$DEVICE" == cuda ]]; then
  "$PYTHON" -c 'import torch; print("GPU:", torch.cuda.get_device_name(0), "| torch", torch.__version__)'
  COMMON=(--device cuda --dtype fp16 --size 512 --full-size)
  STEPS=(--steps 10)
else
  echo "no CUDA device: tiny models on the CPU"
  COMMON=(--device cpu --dtype fp32 --size 64)
  STEPS=(--steps 2)
fi

echo "== windows =="
"$PYTHON" benchmarks/windows.py "${COMMON[@]}" --reps 5
echo "== memory =="
"$PYTHON" benchmarks/memory.py "${COMMON[@]}" "${STEPS[@]}"
echo "== vs diffusers =="
"$PYTHON" benchmarks/vs_diffusers.py "${COMMON[@]}" "${STEPS[@]}" --reps 5
