#!/usr/bin/env bash
# Runs the CUDA attention entry points (native/src/cuda/attention*) in the shared host emulator
# (tests/native/emu) against the CPU reference: no GPU needed, only the CUDA headers, gcc/g++ (with
# libubsan), ninja and python3. See docs/ATTENTION_CUDA.md. Builds into build/emu (LLMK_EMU_BUILD=dir
# elsewhere), incrementally, so the second run of CI reuses the first one's build.
# usage: run.sh [early|late] [name filter | fuzz [count]]   (cp.async data lands at issue or at the wait;
#        CUDA_SRC=dir: kernels from another copy, built apart)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
if [ -n "${CUDA_SRC:-}" ]; then
  build=$(mktemp -d "${TMPDIR:-/tmp}/llmk_attention_emu.XXXXXX")
  trap 'rm -rf "$build"' EXIT
else
  build=${LLMK_EMU_BUILD:-$root/build/emu}
fi
"$root/tests/native/emu/build.sh" "$build" llmk_attention_emu > "$build/build.log" 2>&1 || { cat "$build/build.log"; exit 1; }
"$build/llmk_attention_emu" "${@:-early}"
