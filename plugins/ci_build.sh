#!/usr/bin/env bash
# CI step for plugins/ (called by .ci/run): configure and build the native libraries into <repo>/build.
#   - the C++ CPU kernel (tested by tests/test_plugin_cpu.py against the spec loop and the PyTorch reference);
#   - the CUDA kernels, compiled by nvcc for one architecture to keep CI short (no GPU needed to compile);
#   - the TensorRT plugin only if TensorRT headers are found (CI has none: the configure summary says so).
# Environment: SFADACOF_CI_CUDA_ARCHS (default 90), TensorRT_ROOT / TensorRT_INCLUDE_DIR (optional).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
python=${PYTHON:-python}
command -v "$python" >/dev/null 2>&1 || python=python3

args=(--cuda-archs "${SFADACOF_CI_CUDA_ARCHS:-90}" --jobs "$(nproc 2>/dev/null || echo 2)")
if ! command -v nvcc >/dev/null 2>&1 && [ -z "${CUDACXX:-}" ]; then
  echo "plugins/ci_build.sh: nvcc not found: building the CPU kernel only (the CUDA kernels are NOT compiled)"
  args+=(--no-cuda)
fi
start=$(date +%s)
"$python" -m plugins.build "${args[@]}"
echo "plugins/ci_build.sh: done in $(( $(date +%s) - start )) s"
if [ ! -f build/libsfadacof_trt_plugin.so ]; then
  echo "plugins/ci_build.sh: TensorRT headers not found: the TensorRT plugin library was skipped (expected on CI)"
fi
