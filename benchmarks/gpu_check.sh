#!/usr/bin/env bash
# rsd on an accelerator in under 5 minutes: the table of benchmarks/gpu_check.py, then the
# tests marked `gpu` (they compare the accelerator's numbers with the CPU's).
# Needs only a JAX GPU/TPU install plus rsd's test extra:
#   python -m pip install -e ".[test]" "jax[cuda12]" && bash benchmarks/gpu_check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
python benchmarks/gpu_check.py "$@"
python -m pytest -q -m gpu tests/test_gpu.py
