#!/usr/bin/env bash
# Runs the CUDA backend's checks on a GPU host that has nvcc, CMake and a driver but no .NET:
#   1. builds libllmk, libllmk_cuda and llmk_gpu_bench here, with this host's nvcc;
#   2. llmk_gpu_bench --check-only: every CUDA kernel against the CPU reference of the same library;
#   3. compute-sanitizer memcheck and racecheck on that check;
#   4. the self-contained NUnit test bundle (dotnet publish -r linux-x64 --self-contained, packed as a
#      tarball by scripts/gpu/make-test-bundle.sh), GPU category, plain and under memcheck and racecheck;
#   5. the kernel timings (JSON + markdown) and, if PyTorch is importable, the PyTorch baseline.
# Usage: scripts/gpu/run-gpu-tests.sh [path/to/tests-bundle.tar.xz]
# Environment: OUT (results folder; default build/gpu-results), BUILD_DIR, CUDA_ARCH (default 90),
#   TEST_FILTER (default "TestCategory=Gpu"), TEST_EXE (bundle executable; default LlmKernels.Tests),
#   STEP_TIMEOUT (seconds per step; default 900), SKIP_SANITIZER=1, SKIP_BENCH=1.
# Exit status: 0 when every step that ran passed; the summary lists each step.
set -uo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
bundle=${1:-}
out=${OUT:-$root/build/gpu-results}
build=${BUILD_DIR:-/tmp/llmk-gpu-build}
arch=${CUDA_ARCH:-90}
filter=${TEST_FILTER:-TestCategory=Gpu}
test_exe=${TEST_EXE:-LlmKernels.Tests}
step_timeout=${STEP_TIMEOUT:-900}
mkdir -p "$out"
summary=()
failed=0

# step NAME COMMAND...: runs with a time limit, logs to $out/NAME.log, records PASS/FAIL.
step() {
  local name=$1
  shift
  echo "=== $name: $*"
  local start=$SECONDS
  timeout "$step_timeout" "$@" > "$out/$name.log" 2>&1
  local rc=$?
  tail -n 25 "$out/$name.log"
  if [ $rc -eq 0 ]; then
    summary+=("PASS  $name ($((SECONDS - start)) s)")
  else
    summary+=("FAIL  $name (exit $rc, $((SECONDS - start)) s; see $name.log)")
    failed=1
  fi
  return $rc
}

finish() {
  echo
  echo "=== summary (logs in $out)"
  printf '%s\n' "${summary[@]}" | tee "$out/summary.txt"
  exit $failed
}

nvidia-smi > "$out/nvidia-smi.txt" 2>&1 || true
command -v nvcc > /dev/null || { echo "nvcc not found"; summary+=("FAIL  toolchain: no nvcc"); failed=1; finish; }

generator=()
command -v ninja > /dev/null && generator=(-G Ninja)
step configure cmake -S "$root" -B "$build" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release -DLLMK_CUDA=ON \
  -DCMAKE_CUDA_ARCHITECTURES="$arch" -DLLMK_BUILD_GPU_BENCH=ON || finish
step build cmake --build "$build" -j "$(nproc)" || finish
lib_dir=$build/native
bench=$build/bench/gpu/llmk_gpu_bench

step bench-check "$bench" --check-only

sanitizer=$(command -v compute-sanitizer || true)
if [ -z "$sanitizer" ] && [ -x /usr/local/cuda/bin/compute-sanitizer ]; then
  sanitizer=/usr/local/cuda/bin/compute-sanitizer
fi
if [ -z "${SKIP_SANITIZER:-}" ] && [ -n "$sanitizer" ]; then
  step bench-memcheck "$sanitizer" --tool memcheck --leak-check full --error-exitcode 1 "$bench" --check-only
  step bench-racecheck "$sanitizer" --tool racecheck --racecheck-report all --error-exitcode 1 "$bench" --check-only
  step bench-synccheck "$sanitizer" --tool synccheck --error-exitcode 1 "$bench" --check-only
elif [ -z "$sanitizer" ]; then
  summary+=("SKIP  sanitizer: compute-sanitizer not found")
fi

if [ -n "$bundle" ]; then
  work=$(mktemp -d)
  step bundle-extract tar -xf "$bundle" -C "$work"
  exe=$(find "$work" -type f -name "$test_exe" | head -n 1)
  if [ -z "$exe" ]; then
    summary+=("FAIL  bundle: no $test_exe in $bundle")
    failed=1
  else
    dir=$(dirname "$exe")
    chmod +x "$exe"
    # The managed loader finds the libraries built here beside the assembly or under runtimes/.
    mkdir -p "$dir/runtimes/linux-x64/native"
    cp "$lib_dir"/libllmk.so "$lib_dir"/libllmk_cuda.so "$dir/"
    cp "$lib_dir"/libllmk.so "$lib_dir"/libllmk_cuda.so "$dir/runtimes/linux-x64/native/"
    export LD_LIBRARY_PATH="$lib_dir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    # Load exactly this build, and fail loudly (not fall back to the CPU) if its CUDA backend is unusable.
    export LLMK_NATIVE_LIBRARY="$dir/libllmk_cuda.so" LLMK_BACKEND=cuda
    export DOTNET_gcServer=0
    step tests-gpu "$exe" --filter "$filter"
    if [ -z "${SKIP_SANITIZER:-}" ] && [ -n "$sanitizer" ]; then
      # The .NET runtime makes no CUDA calls of its own; only the library's show up.
      step tests-memcheck "$sanitizer" --tool memcheck --error-exitcode 1 --target-processes all "$exe" --filter "$filter"
      step tests-racecheck "$sanitizer" --tool racecheck --error-exitcode 1 --target-processes all "$exe" --filter "$filter"
    fi
  fi
else
  summary+=("SKIP  tests: no test bundle given")
fi

if [ -z "${SKIP_BENCH:-}" ]; then
  step bench-timings "$bench" --json "$out/bench.json" --markdown "$out/bench.md"
  if python3 -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" > /dev/null 2>&1; then
    step torch-baseline python3 "$root/bench/gpu/torch_baseline.py" --json "$out/torch_baseline.json" \
      --markdown "$out/torch_baseline.md"
  else
    summary+=("SKIP  torch-baseline: PyTorch with CUDA not importable")
  fi
fi

# The model runner's oracle that no one here wrote (issue 4): tiny transformers checkpoints and their logits,
# made where PyTorch is; copy $out/transformers-fixtures/* into tests/fixtures/transformers/ and commit them.
if python3 -c "import torch, transformers, safetensors" > /dev/null 2>&1; then
  step transformers-fixtures python3 "$root/tests/fixtures/transformers/make_fixtures.py" "$out/transformers-fixtures"
else
  summary+=("SKIP  transformers-fixtures: torch/transformers/safetensors not importable")
fi
finish
