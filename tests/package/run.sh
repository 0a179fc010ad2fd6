#!/usr/bin/env bash
# Tests the packed LlmKernels package as a user gets it: restores tests/package/Consumer from the local feed
# into a fresh NuGet packages folder (never a stale cache), builds and runs it, runs it with LLMK_BACKEND=cpu and
# with LLMK_NATIVE_LIBRARY naming a missing file, then publishes it self-contained for linux-x64 and runs that.
# Run scripts/pack.sh first. Environment: LLMK_PACK_OUTPUT, the feed (default artifacts/packages).
set -euo pipefail
cd "$(dirname "$0")/../.."
feed=$(realpath -m "${LLMK_PACK_OUTPUT:-artifacts/packages}")
version=$(sed -n 's:.*<Version>\(.*\)</Version>.*:\1:p' Directory.Build.props | head -1)
[ -f "$feed/LlmKernels.$version.nupkg" ] || { echo "package test: no $feed/LlmKernels.$version.nupkg: run scripts/pack.sh first" >&2; exit 1; }

work=$(mktemp -d "${TMPDIR:-/tmp}/llmk-package-test.XXXXXX")
trap 'rm -rf "$work"' EXIT
export NUGET_PACKAGES=$work/nuget-packages DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1
# The consumer's own NuGet.config, with the feed this run packed into.
sed "s#\.\./\.\./\.\./artifacts/packages#$feed#" tests/package/Consumer/NuGet.config > "$work/NuGet.config"
project=tests/package/Consumer/Consumer.csproj
props=(-p:LlmkPackageVersion="$version" -p:RestoreConfigFile="$work/NuGet.config")

run() { # label, command...: runs it, printing its output, and names the step if it fails
  local label=$1; shift
  echo "-- $label"
  "$@" || { echo "package test FAILED: $label" >&2; exit 1; }
}

echo "== package test: LlmKernels $version from $feed"
run "restore and build" dotnet build "$project" -c Release --artifacts-path "$work/art" "${props[@]}"
app=$(find "$work/art/bin" -name Consumer.dll -path '*release*' | head -1)
run "run (framework-dependent)" dotnet "$app"
LLMK_BACKEND=cpu run "run with LLMK_BACKEND=cpu" dotnet "$app"
missing=$work/no-such-dir/libllmk.so
LLMK_NATIVE_LIBRARY=$missing run "run with LLMK_NATIVE_LIBRARY=$missing (must fail to load, naming it)" \
  dotnet "$app" --expect-load-failure "$missing"

run "publish self-contained linux-x64" dotnet publish "$project" -c Release -r linux-x64 --self-contained \
  -o "$work/self-contained" --artifacts-path "$work/art-sc" "${props[@]}"
for file in Consumer libllmk.so; do
  [ -f "$work/self-contained/$file" ] || { echo "package test FAILED: the self-contained publish has no $file" >&2; exit 1; }
done
run "run (self-contained)" "$work/self-contained/Consumer"
echo "package test: passed"
