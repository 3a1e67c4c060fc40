#!/usr/bin/env python3
"""Benchmark qemu-machine against a raw C QMP client and qemu.qmp.

Runs every metric in rounds, alternating the contenders within each round
(rotating the order from round to round) so that noise on the machine hits
all of them alike, then prints one table of medians and ratios to the raw C
client. Usage: bench/bench.py [--quick] [--json FILE]

Run it through `make bench` (or `make bench-quick`), which builds the
library and the contenders and installs qemu.qmp into a venv first.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.path.join(TOP, "target", "bench")
VENV_PYTHON = os.path.join(TOP, "target", "bench-venv", "bin", "python")
PY_CONTENDERS = os.path.join(TOP, "bench", "py_contenders.py")

CONTENDERS = [
    ("raw C", [os.path.join(BUILD, "raw_qmp")]),
    ("qemu-machine C", [os.path.join(BUILD, "qm_c")]),
    ("qemu-machine Python", [VENV_PYTHON, PY_CONTENDERS, "qemu-machine"]),
    ("qemu.qmp", [VENV_PYTHON, PY_CONTENDERS, "qemu.qmp"]),
]

# metric, total iterations, rounds, unit, description
FULL = [
    ("cycle", 30, 5, "ms", "launch -> QMP ready -> quit -> reaped"),
    ("rtt", 5000, 5, "us", "query-status round trip"),
    ("schema", 50, 5, "ms", "query-qmp-schema round trip + JSON parse"),
    ("stop", 500, 5, "us", "stop -> STOP event in hand"),
    ("vm16", 5, 5, "ms", "16 VMs at once, 100 commands each (wall)"),
    ("vm64", 3, 3, "ms", "64 VMs up at once (wall)"),
]
QUICK = [
    ("cycle", 3, 1, "ms", "launch -> QMP ready -> quit -> reaped"),
    ("rtt", 200, 1, "us", "query-status round trip"),
    ("schema", 3, 1, "ms", "query-qmp-schema round trip + JSON parse"),
    ("stop", 20, 1, "us", "stop -> STOP event in hand"),
    ("vm16", 1, 1, "ms", "16 VMs at once, 100 commands each (wall)"),
    ("vm64", 1, 1, "ms", "64 VMs up at once (wall)"),
]

# Targets for qemu-machine through its C API, as ratios to raw C.
TARGETS = {
    "cycle": 1.10,
    "rtt": 1.15,
    "rtt p99": 1.25,
    "schema": 1.3,
    "stop": 1.20,
    "vm16": 1.15,
}
RSS_TARGET_MIB = 4.0


def run(cmd, metric, n):
    out = subprocess.run(cmd + [metric, str(n)], check=True, capture_output=True, text=True,
                         timeout=900)
    return json.loads(out.stdout.strip().splitlines()[-1])


def percentile(samples, p):
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))]


def measure(plan):
    results = {name: {} for name, _ in CONTENDERS}
    for metric, total, rounds, _, _ in plan:
        per_round = max(1, total // rounds)
        for r in range(rounds):
            order = CONTENDERS[r % len(CONTENDERS):] + CONTENDERS[:r % len(CONTENDERS)]
            for name, cmd in order:
                t = time.monotonic()
                got = run(cmd, metric, per_round)
                slot = results[name].setdefault(
                    metric, {"samples_us": [], "peak_rss_kib": [], "threads_per_vm": 0.0})
                slot["samples_us"] += got["samples_us"]
                slot["peak_rss_kib"].append(got["peak_rss_kib"])
                slot["threads_per_vm"] = got["threads_per_vm"]
                print(f"  {metric:6} round {r + 1}/{rounds} {name:20} "
                      f"{time.monotonic() - t:6.1f} s", file=sys.stderr)
    return results


def table(plan, results, judge):
    names = [name for name, _ in CONTENDERS]
    base = names[0]
    rows = []

    def cell(value, ref, fmt):
        if value is None:
            return "-"
        if ref:
            return f"{fmt(value)} ({value / ref:.2f}x)"
        return fmt(value)

    def target_cell(key, value, ref):
        if key not in TARGETS or value is None or not ref:
            return "", ""
        if not judge:
            return f"<= {TARGETS[key]:.2f}", "n/a"
        ratio = value / ref
        return f"<= {TARGETS[key]:.2f}", "yes" if ratio <= TARGETS[key] else "MISSED"

    for metric, _, _, unit, desc in plan:
        scale = 1000.0 if unit == "ms" else 1.0
        fmt = (lambda v: f"{v / scale:.2f} {unit}")
        stats = {n: statistics.median(results[n][metric]["samples_us"]) for n in names}
        target, ok = target_cell(metric, stats[names[1]], stats[base])
        rows.append([f"{desc} (median)"] +
                    [cell(stats[n], stats[base] if n != base else None, fmt) for n in names] +
                    [target, ok])
        if metric == "rtt":
            p99 = {n: percentile(results[n][metric]["samples_us"], 0.99) for n in names}
            target, ok = target_cell("rtt p99", p99[names[1]], p99[base])
            rows.append([f"{desc} (p99)"] +
                        [cell(p99[n], p99[base] if n != base else None, fmt) for n in names] +
                        [target, ok])
        if metric in ("vm16", "vm64"):
            rss = {n: statistics.median(results[n][metric]["peak_rss_kib"]) for n in names}
            extra = (rss[names[1]] - rss[base]) / 1024.0
            ok = ("yes" if extra <= RSS_TARGET_MIB else "MISSED") if judge else "n/a"
            rows.append([f"controller peak RSS, {metric[2:]} VMs"] +
                        [f"{rss[n] / 1024.0:.1f} MiB" +
                         ("" if n == base else f" (+{(rss[n] - rss[base]) / 1024.0:.1f})")
                         for n in names] +
                        (["<= +4 MiB", ok] if metric == "vm16" else ["", ""]))
        if metric == "vm64":
            rows.append(["threads per VM, 64 VMs"] +
                        [f"{results[n][metric]['threads_per_vm']:.2f}" for n in names] + ["", ""])

    header = ["metric"] + names + ["target (qm C)", "met"]
    widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(len(header))]
    lines = [" | ".join(str(c).ljust(w) for c, w in zip(header, widths)),
             "-|-".join("-" * w for w in widths)]
    lines += [" | ".join(str(c).ljust(w) for c, w in zip(r, widths)) for r in rows]
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few iterations: a smoke test")
    parser.add_argument("--json", help="also write the raw samples to this file")
    args = parser.parse_args()
    plan = QUICK if args.quick else FULL
    started = time.monotonic()
    results = measure(plan)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(results, f)
    print()
    print(f"qemu-machine benchmark ({'quick' if args.quick else 'full'} run, "
          f"{time.monotonic() - started:.0f} s; ratios are to raw C in the same run)")
    print()
    print(table(plan, results, judge=not args.quick))
    if args.quick:
        print("\nquick run: too few samples to judge the targets (run make bench)")


if __name__ == "__main__":
    main()
