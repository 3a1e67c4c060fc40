#!/usr/bin/env bash
# Build the benchmark's contenders and run bench/bench.py (arguments are
# passed on: --quick, --json FILE). Expects the release library
# (`make bench` builds it); installs qemu.qmp into target/bench-venv.
set -euo pipefail
cd "$(dirname "$0")/.."

out=target/bench
release=$PWD/target/release
mkdir -p "$out"
cflags=(-O2 -std=c11 -Wall -Wextra -Werror)
cc "${cflags[@]}" -o "$out/raw_qmp" bench/raw_qmp.c -ljansson -lpthread
cc "${cflags[@]}" -DRAW_IDS -o "$out/raw_qmp_ids" bench/raw_qmp.c -ljansson -lpthread
cc "${cflags[@]}" -Iinclude -o "$out/qm_c" bench/qm_c.c \
  -L"$release" -Wl,-rpath,"$release" -lqemu_machine -ljansson -lpthread

venv=target/bench-venv
if ! "$venv/bin/python" -c 'import qemu.qmp' 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q 'qemu.qmp==0.0.6'
fi
exec "$venv/bin/python" bench/bench.py "$@"
