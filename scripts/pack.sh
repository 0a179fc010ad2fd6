#!/usr/bin/env bash
# Builds the native flavours and packs the LlmKernels NuGet package (and its .snupkg) and the llmk .NET tool
# (llmk.<version>.nupkg, with the linux-x64 native libraries beside llmk.dll) into artifacts/packages:
#   runtimes/linux-x64/native/libllmk.so        CPU build; links no CUDA library (checked)
#   runtimes/linux-x64/native/libgomp.so.1      the OpenMP runtime libllmk.so needs; the managed loader loads it
#                                               only where the system has none (no RUNPATH: the system's wins)
#   runtimes/linux-x64/native/libllmk_cuda.so   CUDA build, when there is one (see LLMK_PACK_CUDA*)
#   runtimes/win-x64/native/llmk.dll            cross-compiled with mingw-w64; needs only system DLLs (checked)
# Environment (all optional):
#   LLMK_PACK_BUILD_ROOT  where the CMake and dotnet builds go            (default: build/pack)
#   LLMK_PACK_OUTPUT      where the packages go                           (default: artifacts/packages)
#   LLMK_PACK_CUDA        auto: build the CUDA flavour when nvcc is found; on: required; off: CPU only
#   LLMK_PACK_WINE        auto (default): run llmk.dll's smoke test under Wine when Wine is installed; off: never
#   LLMK_PACK_CUDA_DIR    an existing CMake build dir configured with -DLLMK_CUDA=ON (e.g. CI's build/ci-cuda):
#                         it is brought up to date and its libllmk_cuda.so packed instead of building another
# See docs/PACKAGING.md.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
build=$(realpath -m "${LLMK_PACK_BUILD_ROOT:-build/pack}")
out=$(realpath -m "${LLMK_PACK_OUTPUT:-artifacts/packages}")
cuda_mode=${LLMK_PACK_CUDA:-auto}
fail() { echo "pack.sh: $*" >&2; exit 1; }

# The version lives in Directory.Build.props; the C library's llmk_version() comes from CMake's project(VERSION),
# so the two must agree or the package would carry a native library of another version.
version=$(sed -n 's:.*<Version>\(.*\)</Version>.*:\1:p' Directory.Build.props | head -1)
cmake_version=$(sed -n 's/^project(LlmKernels VERSION \([0-9.]*\).*/\1/p' CMakeLists.txt)
[ -n "$version" ] || fail "no <Version> in Directory.Build.props"
[ "$version" = "$cmake_version" ] || fail "Directory.Build.props has Version $version but CMakeLists.txt has project VERSION $cmake_version"
echo "== LlmKernels $version: native builds under $build"

cmake_common=(-G Ninja -DCMAKE_BUILD_TYPE=Release)

echo "== linux-x64 CPU"
cpu_dir=$build/linux-x64
cmake -S . -B "$cpu_dir" "${cmake_common[@]}" -DLLMK_CUDA=OFF >/dev/null
cmake --build "$cpu_dir" --parallel
cpu_lib=$cpu_dir/native/libllmk.so
needed=$(readelf -d "$cpu_lib" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | tr '\n' ' ')
echo "libllmk.so needs: $needed"
if grep -Eq 'libcu|libnv' <<<"$needed"; then fail "libllmk.so (the CPU build) must not depend on CUDA libraries: $needed"; fi
extras=()
if grep -q 'libgomp' <<<"$needed"; then
  gomp=$(ldd "$cpu_lib" | awk '/libgomp/ { print $3 }')
  [ -f "$gomp" ] || fail "libllmk.so needs libgomp but ldd cannot find it"
  mkdir -p "$build/linux-x64-extras"
  cp -L "$gomp" "$build/linux-x64-extras/libgomp.so.1"
  extras+=("$build/linux-x64-extras/libgomp.so.1")
fi

echo "== win-x64 (mingw-w64)"
command -v x86_64-w64-mingw32-gcc >/dev/null || fail "x86_64-w64-mingw32-gcc not found: apt-get install gcc-mingw-w64-x86-64"
win_dir=$build/win-x64
cmake -S . -B "$win_dir" -G Ninja -DCMAKE_BUILD_TYPE=Release -DLLMK_CUDA=OFF \
  -DCMAKE_TOOLCHAIN_FILE="$root/cmake/toolchains/mingw-w64-x86_64.cmake" >/dev/null
cmake --build "$win_dir" --parallel
win_lib=$win_dir/native/llmk.dll
dlls=$(x86_64-w64-mingw32-objdump -p "$win_lib" | sed -n 's/^\s*DLL Name: //p' | tr '\n' ' ')
echo "llmk.dll imports: $dlls"
for dll in $dlls; do
  # Only DLLs every Windows has: no libgcc_s_seh-1.dll, libwinpthread-1.dll or libgomp-1.dll to ship.
  grep -Eiq '^(kernel32|msvcrt|ucrtbase|advapi32|api-ms-win-.*)\.dll$' <<<"$dll" || fail "llmk.dll imports $dll, which Windows does not provide"
done
# Both builds must export the whole C API.
linux_exports=$(nm -D --defined-only "$cpu_lib" | awk '$3 ~ /^llmk_/ { print $3 }' | sort)
win_exports=$(x86_64-w64-mingw32-objdump -p "$win_lib" | sed -n '/Ordinal\/Name Pointer/,$p' | grep -o 'llmk_[a-z0-9_]*' | sort -u)
[ "$linux_exports" = "$win_exports" ] || fail "llmk.dll and libllmk.so export different functions: $(diff <(echo "$linux_exports") <(echo "$win_exports") | grep '^[<>]' | tr '\n' ' ')"
echo "both export $(wc -l <<<"$linux_exports") llmk_ functions"
# Where Wine is installed (apt package wine64), the DLL also runs: tests/package/windows/smoke.c.
wine=$(command -v wine64 || command -v wine || { [ -x /usr/lib/wine/wine64 ] && echo /usr/lib/wine/wine64; } || true)
if [ -n "$wine" ] && [ "${LLMK_PACK_WINE:-auto}" != off ]; then
  smoke=$build/win-x64-smoke
  rm -rf "$smoke" && mkdir -p "$smoke"
  x86_64-w64-mingw32-gcc -O1 -Wall -static -I native/include tests/package/windows/smoke.c "$win_dir/native/llmk.dll.a" -o "$smoke/smoke.exe"
  cp "$win_lib" "$smoke/"
  (cd "$smoke" && WINEPREFIX=$smoke/prefix WINEDEBUG=-all timeout 300 "$wine" smoke.exe 2>/dev/null | tr -d '\r') \
    || fail "llmk.dll failed its smoke test under Wine ($wine)"
  WINEPREFIX=$smoke/prefix "$(dirname "$wine")/wineserver" -k 2>/dev/null || true
else
  echo "llmk.dll not run: no Wine (apt package wine64) to run it"
fi

cuda_props=()
if [ -n "${LLMK_PACK_CUDA_DIR:-}" ] && [ "$cuda_mode" != off ]; then
  echo "== linux-x64 CUDA (existing build dir $LLMK_PACK_CUDA_DIR)"
  cuda_dir=$(realpath "$LLMK_PACK_CUDA_DIR")
  cmake --build "$cuda_dir" --parallel
  cuda_props=("-p:LlmkPackCudaDir=$cuda_dir")
elif [ "$cuda_mode" != off ] && command -v nvcc >/dev/null; then
  echo "== linux-x64 CUDA"
  cuda_dir=$build/linux-x64-cuda
  host=()
  if command -v clang-14 >/dev/null; then host=(-DCMAKE_CUDA_HOST_COMPILER=clang-14); fi
  cmake -S . -B "$cuda_dir" "${cmake_common[@]}" -DLLMK_CUDA=ON "${host[@]}" >/dev/null
  cmake --build "$cuda_dir" --parallel
  cuda_props=("-p:LlmkPackCudaDir=$cuda_dir")
elif [ "$cuda_mode" = on ]; then
  fail "LLMK_PACK_CUDA=on but there is no nvcc and no LLMK_PACK_CUDA_DIR"
else
  echo "== linux-x64 CUDA: skipped (LLMK_PACK_CUDA=$cuda_mode, nvcc $(command -v nvcc || echo 'not found'))"
fi
if [ ${#cuda_props[@]} -gt 0 ]; then
  [ -f "$cuda_dir/native/libllmk_cuda.so" ] || fail "$cuda_dir has no native/libllmk_cuda.so (configure it with -DLLMK_CUDA=ON)"
  echo "libllmk_cuda.so needs: $(readelf -d "$cuda_dir/native/libllmk_cuda.so" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | tr '\n' ' ')"
fi

echo "== dotnet pack Interop.sln -> $out"
# The whole solution, as a user's `dotnet pack` would: exactly LlmKernels (+ .snupkg) and the llmk tool must come out.
mkdir -p "$out"
staging=$build/packages
rm -rf "$staging"
extras_prop=$(IFS=';'; echo "${extras[*]:-}")
dotnet pack Interop.sln -c Release -o "$staging" --artifacts-path "$build/dotnet" -nologo \
  -p:LlmkSkipNativeBuild=true "-p:LlmkNativeDir=$cpu_dir/native" "-p:LlmkPackCpuDir=$cpu_dir" "-p:LlmkPackWinDir=$win_dir" \
  "-p:LlmkPackLinuxExtras=$extras_prop" "${cuda_props[@]}"
made=$(cd "$staging" && ls | sort | tr '\n' ' ')
[ "$made" = "LlmKernels.$version.nupkg LlmKernels.$version.snupkg llmk.$version.nupkg " ] \
  || fail "dotnet pack Interop.sln made '$made'; expected exactly LlmKernels.$version.nupkg, its .snupkg and llmk.$version.nupkg"
for file in $made; do rm -f "$out/$file"; cp "$staging/$file" "$out/"; done

package=$out/LlmKernels.$version.nupkg
[ -f "$package" ] && [ -f "$out/LlmKernels.$version.snupkg" ] || fail "dotnet pack made no $package (and .snupkg)"
if command -v unzip >/dev/null; then
  list() { unzip -Z1 "$1"; }
elif command -v python3 >/dev/null; then
  list() { python3 -c 'import sys, zipfile; print("\n".join(zipfile.ZipFile(sys.argv[1]).namelist()))' "$1"; }
else
  fail "cannot list $package: neither unzip nor python3 is installed"
fi
listing=$(list "$package")
expected=(README.md runtimes/linux-x64/native/libllmk.so runtimes/win-x64/native/llmk.dll)
for tfm in net8.0 net10.0; do
  expected+=("lib/$tfm/LlmKernels.dll" "lib/$tfm/LlmKernels.xml")
  if [ -f managed/LlmKernels.Models/LlmKernels.Models.csproj ]; then expected+=("lib/$tfm/LlmKernels.Models.dll"); fi
done
if [ ${#cuda_props[@]} -gt 0 ]; then expected+=(runtimes/linux-x64/native/libllmk_cuda.so); fi
for file in "${expected[@]}"; do
  grep -qxF "$file" <<<"$listing" || fail "$package lacks $file"
done
echo "$listing" | grep -E '^(lib|runtimes)/' | sed 's/^/  /'
echo "packed $package"

# The tool: llmk and the native libraries beside it (the loader looks in the application's folder first).
tool=$out/llmk.$version.nupkg
tool_listing=$(list "$tool")
tool_expected=(tools/net10.0/any/DotnetToolSettings.xml tools/net10.0/any/llmk.dll tools/net10.0/any/libllmk.so)
if [ ${#cuda_props[@]} -gt 0 ]; then tool_expected+=(tools/net10.0/any/libllmk_cuda.so); fi
for file in "${tool_expected[@]}"; do
  grep -qxF "$file" <<<"$tool_listing" || fail "$tool lacks $file"
done
echo "$tool_listing" | grep -E '(\.so|\.so\.[0-9]+|llmk\.dll|Settings\.xml)$' | sed 's/^/  /'
echo "packed $tool"
