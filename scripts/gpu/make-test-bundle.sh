#!/usr/bin/env bash
# Makes the self-contained NUnit test bundle for GPU hosts that have no .NET SDK: the test project published
# for linux-x64 with the .NET runtime inside, without native libraries (run-gpu-tests.sh builds them there
# with that host's nvcc and points LLMK_NATIVE_LIBRARY at them).
# Usage: scripts/gpu/make-test-bundle.sh [out.tar.xz]   (default build/gpu-bundle/llmk-tests-linux-x64.tar.xz)
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
out=${1:-$root/build/gpu-bundle/llmk-tests-linux-x64.tar.xz}
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
dotnet publish "$root/tests/LlmKernels.Tests" -c Release -r linux-x64 --self-contained \
  -p:LlmkCuda=OFF -o "$stage/llmk-tests"
rm -f "$stage"/llmk-tests/libllmk*.so
mkdir -p "$(dirname "$out")"
tar -C "$stage" -cJf "$out" llmk-tests
echo "$out: $(du -h "$out" | cut -f1)"
