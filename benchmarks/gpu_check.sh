#!/usr/bin/env bash
# GPU check of every bundle: training images/s, seconds per 155-slice 240x240 volume at inference and peak GPU
# memory, in fp32 and bf16 (where the GPU has it); writes gpu_check.json and gpu_check.md (benchmarks/gpu_check.py).
# Under 10 minutes on one GPU. Without a GPU it runs on the CPU; --tiny is the CPU smoke setting the tests use.
#   bash benchmarks/gpu_check.sh --out /tmp/gpu_check
#   bash benchmarks/gpu_check.sh --tiny --device cpu --out /tmp/gpu_tiny
set -euo pipefail
cd "$(dirname "$0")/.."
exec timeout 590 "${PYTHON:-python}" benchmarks/gpu_check.py "$@"
