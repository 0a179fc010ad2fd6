#!/usr/bin/env bash
# Runs the CUDA backend's kernels (every .cu of native/src/cuda) on the host, in the shared fiber emulator
# (tests/native/emu), through the public API: llmk_gpu_bench --check-only compares every op on the emulated
# CUDA context with the CPU reference, as it does on a GPU. No GPU needed: the CUDA headers, gcc/g++ (with
# libubsan), ninja and python3. Built with UBSan (misaligned 16-byte vector accesses and other undefined
# behaviour abort the run) into build/emu (LLMK_EMU_BUILD=dir elsewhere), incrementally.
# usage: run.sh [llmk_gpu_bench arguments; default --check-only]   (CUDA_SRC=dir: kernels from another copy)
set -euo pipefail
exec "$(dirname "$0")/../emu/run.sh" llmk_cuda_emu "${@:---check-only}"
