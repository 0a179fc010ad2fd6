#!/usr/bin/env bash
# Builds and runs the host emulation of the CUDA attention kernels: no GPU needed, only the CUDA headers
# (cuda_fp16.h, cuda_bf16.h, cuda_runtime.h) and clang++ 14+. See docs/ATTENTION_CUDA.md.
# usage: run.sh [early|late] [name filter | fuzz [count]]   (cp.async data lands at issue or at the wait)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
exe=${TMPDIR:-/tmp}/llmk_attention_emu.$$
cxx=${CXX:-clang++-14}
"$cxx" -std=c++20 -O2 -I"$root/native/src/cuda" -I"$root/native/src/core" -I"$root/native/include" \
  ${CUDA_HOME:+-I"$CUDA_HOME/include"} -Wno-unknown-attributes "$here/attention_emu.cpp" -o "$exe"
trap 'rm -f "$exe"' EXIT
"$exe" "${@:-early}"
