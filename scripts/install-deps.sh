#!/usr/bin/env bash
# Install the Debian packages the build, tests and demo need, if missing.
# Usage: scripts/install-deps.sh
set -euo pipefail

# command-or-file  package
needs=(
  "qemu-system-x86_64 qemu-system-x86"
  "cc gcc"
  "c++ g++"
  "nm binutils"
  "valgrind valgrind"
  "pkg-config pkg-config"
  "go golang-go"
  "/usr/include/jansson.h libjansson-dev"
  "cpio cpio"
  "xz xz-utils"
  "zstd zstd"
  "strace strace"
)

missing=()
for entry in "${needs[@]}"; do
  read -r what pkg <<<"$entry"
  if [[ "$what" == /* ]]; then
    [[ -e "$what" ]] || missing+=("$pkg")
  else
    command -v "$what" >/dev/null 2>&1 || missing+=("$pkg")
  fi
done

if ((${#missing[@]} == 0)); then
  exit 0
fi

echo "installing missing packages: ${missing[*]}" >&2
sudo=()
if ((EUID != 0)); then
  command -v sudo >/dev/null 2>&1 || {
    echo "error: need root (or sudo) to install: ${missing[*]}" >&2
    exit 1
  }
  sudo=(sudo)
fi
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -q
"${sudo[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
