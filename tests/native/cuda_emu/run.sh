#!/usr/bin/env bash
# Runs the CUDA backend's kernels (native/src/cuda: elementwise, norm, activation, rope, linear, moe) on the
# host, in the fiber emulator of emu_runtime.h, through the public API: llmk_gpu_bench --check-only compares
# every op on the emulated CUDA context with the CPU reference (attention is reported SKIP here; it has its
# own emulator in tests/native/attention_emu). No GPU needed: the CUDA headers and gcc/g++ (with libubsan).
# Built with UBSan (misaligned 16-byte vector accesses and other undefined behaviour abort the run).
# usage: run.sh [llmk_gpu_bench arguments; default --check-only]   (CUDA_SRC=dir: kernels from another copy)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
cc=${CC:-gcc}
cxx=${CXX:-g++}
cuda_src=${CUDA_SRC:-$root/native/src/cuda} # another copy of the kernels, e.g. a deliberately broken one
work=$(mktemp -d "${TMPDIR:-/tmp}/llmk_cuda_emu.XXXXXX")
trap 'rm -rf "$work"' EXIT
sanitize=(-fsanitize=undefined -fno-sanitize-recover=undefined)
includes=(-I"$work" -I"$here" -I"$root/native/include" -I"$root/native/src/core" -I"$root/native/src/cpu" -I"$cuda_src"
          ${CUDA_HOME:+-I"$CUDA_HOME/include"})
objects=()
pids=()
for c in "$root"/native/src/core/*.c "$root"/native/src/api/*.c "$root"/native/src/cpu/*.c "$root"/native/src/cpu_fast/*.c; do
  o="$work/$(basename "$(dirname "$c")")_$(basename "$c" .c).o"
  # The fast CPU flavours need their ISA flags, as native/CMakeLists.txt gives them.
  case "$(basename "$c")" in
    avx2.c) isa=(-mavx2 -mfma -mf16c) ;;
    avx512.c) isa=(-mavx512f -mavx512bw -mavx512vl -mfma -mf16c) ;;
    *) isa=() ;;
  esac
  "$cc" -std=c11 -O1 -g -w -pthread "${isa[@]}" "${sanitize[@]}" -DLLMK_WITH_CUDA -DLLMK_BUILDING "${includes[@]}" \
    -c "$c" -o "$o" &
  pids+=($!)
  objects+=("$o")
done
for pid in "${pids[@]}"; do wait "$pid"; done # a failed compile stops here, not at the link
for name in elementwise norm activation rope linear moe; do
  python3 "$here/preprocess.py" "$cuda_src/$name.cu" "$work/$name.cpp"
done
python3 "$here/preprocess.py" "$root/bench/gpu/llmk_gpu_bench.cu" "$work/bench.cpp"
for header in common quant; do # found first on the include path
  python3 "$here/preprocess.py" "$cuda_src/$header.cuh" "$work/$header.cuh"
done
for src in "$work"/*.cpp "$here/fake_backend.cpp"; do
  o="$work/$(basename "$src" .cpp).cpp.o"
  "$cxx" -std=c++17 -O1 -g "${sanitize[@]}" -w -DLLMK_WITH_CUDA -DLLMK_BUILDING "${includes[@]}" \
    -c "$src" -o "$o"
  objects+=("$o")
done
"$cxx" "${sanitize[@]}" "${objects[@]}" -lm -pthread -o "$work/llmk_cuda_emu"
"$work/llmk_cuda_emu" "${@:---check-only}"
