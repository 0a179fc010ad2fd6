#!/usr/bin/env bash
# Builds one program of the emulated CUDA backend (build.sh) and runs it: what tests/native/cuda_emu/run.sh and
# tests/native/attention_emu/run.sh do. The build goes to build/emu (LLMK_EMU_BUILD=dir elsewhere) and is
# incremental, so a second run reuses the first one's objects; with CUDA_SRC=dir (the kernels of another copy,
# e.g. a deliberately broken one) it goes to a temporary folder instead. The build's output is shown only when
# it fails.
# usage: run.sh PROGRAM [arguments]   (PROGRAM: llmk_cuda_emu or llmk_attention_emu)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
program=$1
shift
if [ -n "${CUDA_SRC:-}" ]; then
  build=$(mktemp -d "${TMPDIR:-/tmp}/llmk_emu.XXXXXX")
  trap 'rm -rf "$build"' EXIT
else
  build=${LLMK_EMU_BUILD:-$root/build/emu}
fi
mkdir -p "$build"
"$here/build.sh" "$build" "$program" > "$build/build.log" 2>&1 || { cat "$build/build.log"; exit 1; }
"$build/$program" "$@"
