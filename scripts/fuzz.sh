#!/usr/bin/env bash
# Run the fuzz targets with cargo-fuzz on the stable toolchain (no
# sanitizer: the targets exercise safe code; -s none needs no nightly).
# Usage: scripts/fuzz.sh [-runs=N | -max_total_time=S] [TARGET...]
# Default: 10 million runs of every target. The committed seeds in
# fuzz/seeds/ are copied into a working corpus under fuzz/corpus/.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

limit=-runs=10000000
if [[ ${1:-} == -* ]]; then
  limit=$1
  shift
fi
targets=("$@")
((${#targets[@]})) || targets=(qmp_stream event_match)

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz: installing cargo-fuzz" >&2
  cargo install cargo-fuzz --locked
fi

for t in "${targets[@]}"; do
  mkdir -p "corpus/$t"
  cp -n seeds/"$t"/* "corpus/$t/" 2>/dev/null || true
  echo "fuzz: $t ($limit)" >&2
  # grep hides libFuzzer's progress lines; cargo fuzz's status decides.
  set +e
  cargo fuzz run -s none "$t" "corpus/$t" -- "$limit" -print_final_stats=1 2>&1 |
    grep -E '^(stat::|Done|INFO: Seed|==|SUMMARY|thread .* panicked|Crash|artifact)'
  status=${PIPESTATUS[0]}
  set -e
  if ((status != 0)); then
    echo "fuzz: $t failed (see fuzz/artifacts/$t)" >&2
    exit "$status"
  fi
done
