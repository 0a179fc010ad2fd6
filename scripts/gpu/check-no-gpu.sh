#!/usr/bin/env bash
# CI on a machine without a GPU: builds libllmk_cuda (and the GPU bench, so that it compiles too) with the
# CUDA toolkit of .ci/install-cuda.sh, then checks that the CUDA entry points fail cleanly with
# LLMK_STATUS_UNAVAILABLE (scripts/gpu/unavailable_check.c).
# Usage: scripts/gpu/check-no-gpu.sh [build-dir]   (CUDA_HOST_COMPILER defaults to clang-14)
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
build=${1:-$root/build/cuda}
cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DLLMK_CUDA=ON \
  -DCMAKE_CUDA_HOST_COMPILER="${CUDA_HOST_COMPILER:-clang-14}" -DLLMK_BUILD_GPU_BENCH=ON
cmake --build "$build"
cc -O1 -Wall -Wextra -o "$build/unavailable_check" "$root/scripts/gpu/unavailable_check.c" -ldl
"$build/unavailable_check" "$build/native/libllmk_cuda.so"
