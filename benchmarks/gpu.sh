#!/usr/bin/env bash
# The GPU benchmarks: 512x512, 16 frames, fp16, 25 DDIM steps, CFG 7.5, random weights in the real
# SD1.5 UNet / VAE / CLIP-L and v3 motion-module shapes (about 1.7 GB, no downloads):
#   1. one generation: sampling / decode / total time, frames/s, peak VRAM, achieved TFLOP/s, the
#      (UNet+MM)/UNet time vs FLOP ratio, and the temporal-attention batch-limit check at 1024^2;
#   2. end to end vs diffusers' AnimateDiffPipeline (min of 5 interleaved runs);
#   3. context windows at N=64 (batched vs one window per call);
#   4. peak VRAM for N = 16, 64, 256 frames with context 16 (2 steps; must be flat).
# About 5 minutes on an H200. Needs CUDA: without it the script stops with exit status 2 and a
# message. GPU_SH_DEVICE=cpu runs the same scripts on the tiny models on the CPU (plumbing only).
#
#   bash benchmarks/gpu.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-.venv/bin/python}"
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-PASSIVE}"

if [[ "${GPU_SH_DEVICE:-cuda}" == cpu ]]; then
  echo "GPU_SH_DEVICE=cpu: the tiny models on the CPU (checks the scripts, measures nothing useful)"
  COMMON=(--device cpu --dtype fp32 --size 64)
  STEPS=2
  TINY=(--tiny)
  FULL=()
else
  if ! "$PYTHON" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 2)'; then
    echo "gpu.sh: no CUDA device visible to $PYTHON (torch.cuda.is_available() is False);" \
      "these benchmarks need an NVIDIA GPU. Nothing was run." >&2
    exit 2
  fi
  COMMON=(--device cuda --dtype fp16 --size 512)
  STEPS=25
  TINY=()
  FULL=(--full-size)
fi

echo "== 1. one generation =="
"$PYTHON" benchmarks/gpu_run.py "${COMMON[@]}" --steps "$STEPS" --reps 5 ${TINY[@]+"${TINY[@]}"}
echo "== 2. vs diffusers =="
"$PYTHON" benchmarks/vs_diffusers.py "${COMMON[@]}" ${FULL[@]+"${FULL[@]}"} --steps "$STEPS" --reps 5
echo "== 3. windows =="
"$PYTHON" benchmarks/windows.py "${COMMON[@]}" ${FULL[@]+"${FULL[@]}"} --reps 5
echo "== 4. memory =="
# CUDA's max_memory_allocated does not vary between runs: one run per point.
"$PYTHON" benchmarks/memory.py "${COMMON[@]}" ${FULL[@]+"${FULL[@]}"} --steps 2 --reps 1
