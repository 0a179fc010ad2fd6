#!/usr/bin/env bash
# Runs the CUDA attention entry points (native/src/cuda/attention*) in the shared host emulator
# (tests/native/emu) against the CPU reference: no GPU needed, only the CUDA headers, gcc/g++ (with
# libubsan), ninja and python3. See docs/ATTENTION_CUDA.md. Builds into build/emu (LLMK_EMU_BUILD=dir
# elsewhere), incrementally, so the second run of CI reuses the first one's build.
# usage: run.sh [early|late] [name filter | fuzz [count]]   (cp.async data lands at issue or at the wait;
#        CUDA_SRC=dir: kernels from another copy, built apart)
set -euo pipefail
exec "$(dirname "$0")/../emu/run.sh" llmk_attention_emu "${@:-early}"
