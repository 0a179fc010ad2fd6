#!/usr/bin/env bash
# Tests the llmk .NET tool as a user gets it, following README.md's Install steps in a fresh HOME (its own NuGet
# config, packages folder and global tools): adds the local folder feed that scripts/pack.sh fills as a NuGet
# source, installs the tool from it (dotnet tool install --global llmk), runs it (info, generate and a two-turn
# chat on the built-in tiny model, a mistake that must give one error line), and adds the LlmKernels package to a
# new console project, which must build.
# Run scripts/pack.sh first. Environment: LLMK_PACK_OUTPUT, the feed (default artifacts/packages).
set -euo pipefail
cd "$(dirname "$0")/../.."
feed=$(realpath -m "${LLMK_PACK_OUTPUT:-artifacts/packages}")
version=$(sed -n 's:.*<Version>\(.*\)</Version>.*:\1:p' Directory.Build.props | head -1)
[ -f "$feed/llmk.$version.nupkg" ] || { echo "tool test: no $feed/llmk.$version.nupkg: run scripts/pack.sh first" >&2; exit 1; }

work=$(mktemp -d "${TMPDIR:-/tmp}/llmk-tool-test.XXXXXX")
trap 'rm -rf "$work"' EXIT
# A new user: nothing configured, nothing cached. nuget.org comes from the SDK's default NuGet.Config.
export HOME=$work/home DOTNET_CLI_HOME=$work/home NUGET_PACKAGES=$work/home/.nuget/packages
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1 DOTNET_SKIP_FIRST_TIME_EXPERIENCE=1
mkdir -p "$HOME"
fail() { echo "tool test FAILED: $*" >&2; exit 1; }

echo "== tool test: llmk $version from $feed, README's install steps in a fresh HOME"
echo "-- dotnet nuget add source $feed --name llmk-local"
dotnet nuget add source "$feed" --name llmk-local || fail "dotnet nuget add source"
echo "-- dotnet tool install --global llmk --version $version"
(cd "$work" && dotnet tool install --global llmk --version "$version") || fail "dotnet tool install --global llmk"
llmk=$HOME/.dotnet/tools/llmk

echo "-- llmk info"
"$llmk" info || fail "llmk info"

echo "-- llmk generate --preset tiny-llama"
text=$("$llmk" generate --preset tiny-llama --prompt "Once upon a time" --max-tokens 8 --seed 1 2>"$work/generate.err") \
  || { cat "$work/generate.err"; fail "llmk generate"; }
[[ $text == "Once upon a time"* ]] || fail "llmk generate printed '$text', not the prompt and its continuation"
grep -q "generated 8 tokens" "$work/generate.err" || { cat "$work/generate.err"; fail "llmk generate did not report 8 tokens"; }

echo "-- llmk chat --preset tiny-llama (two turns, /exit)"
printf 'Hello\nAnd then?\n/exit\n' | "$llmk" chat --preset tiny-llama --max-tokens 4 --temperature 0 >"$work/chat.out" 2>"$work/chat.err" \
  || { cat "$work/chat.err"; fail "llmk chat"; }
cat "$work/chat.err"
[ "$(grep -c 'of them from the cache' "$work/chat.err")" -eq 2 ] || fail "llmk chat did not answer two turns"
grep -Eq 'prompt [0-9]+ tokens, [1-9][0-9]* of them from the cache' "$work/chat.err" || fail "the second turn did not reuse the KV cache"

echo "-- llmk chat --model <missing folder> (one error line, exit code 1)"
set +e
"$llmk" chat --model "$work/no-such-model" </dev/null >/dev/null 2>"$work/missing.err"
code=$?
set -e
[ "$code" -eq 1 ] && [ "$(wc -l <"$work/missing.err")" -eq 1 ] && grep -q "^llmk: error: --model .*no such directory" "$work/missing.err" \
  || { cat "$work/missing.err"; fail "llmk chat --model <missing> gave exit code $code and not one error line"; }
echo "-- a new console project: dotnet add package LlmKernels --version $version, dotnet build"
(cd "$work" && dotnet new console -o app >/dev/null && cd app && dotnet add package LlmKernels --version "$version" && dotnet build -nologo -v q) \
  || fail "dotnet add package LlmKernels in a new project"
echo "tool test: passed"
