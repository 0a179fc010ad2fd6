#!/usr/bin/env bash
# Installs the CUDA 11.8 toolkit Debian bookworm ships (non-free) plus clang-14, the host compiler nvcc 11.8
# accepts (gcc 12 is too new for it). Idempotent: does nothing when both are already on PATH. Run as root.
set -euo pipefail

if command -v nvcc >/dev/null 2>&1 && command -v clang-14 >/dev/null 2>&1; then
  echo "install-cuda: nvcc and clang-14 already present: $(command -v nvcc)"
  exit 0
fi

src=/etc/apt/sources.list.d/debian.sources
dst=/etc/apt/sources.list.d/debian-nonfree.sources
if [ ! -f "$dst" ]; then
  # Copy the stanza whose URIs point at the main Debian archive (not debian-security), keeping its
  # URIs and Signed-By, with only the bookworm suites and the contrib/non-free components.
  awk -v RS= -v ORS='\n\n' '/URIs:[^\n]*\/debian([[:space:]]|$)/' "$src" \
    | sed -E -e 's/^Suites:.*/Suites: bookworm bookworm-updates/' \
             -e 's/^Components:.*/Components: contrib non-free/' > "$dst.tmp"
  if ! grep -q '^URIs:' "$dst.tmp"; then
    echo "install-cuda: no Debian archive entry found in $src" >&2
    rm -f "$dst.tmp"
    exit 1
  fi
  mv "$dst.tmp" "$dst"
fi

export DEBIAN_FRONTEND=noninteractive
apt-get update
apt-get install -y --no-install-recommends nvidia-cuda-toolkit clang-14
nvcc --version
