#!/usr/bin/env python3
"""The Python contenders of the benchmark:

  qemu-machine   qemu-machine through its Python binding;
  qemu.qmp       qemu.qmp's legacy.QEMUMonitorProtocol over a socketpair
                 (how QEMU's own QEMUMachine uses it);
  qemu.qmp-async qemu.qmp's asyncio QMPClient, connected with a socket of a
                 socketpair, QEMU started with asyncio.create_subprocess_exec
                 (metrics rtt, vm16, wire);
  qemu-machine-asyncio
                 qemu-machine's asyncio API (qemu_machine.aio.AsyncMachine):
                 one event loop watching each machine's descriptor, launch
                 and shutdown in the default executor (metrics rtt, vm16,
                 wire);
  popen          subprocess.Popen (vfork) launching QEMU with a socketpair
                 monitor, then the QMP greeting and qmp_capabilities (metrics
                 readyGIB,GIB..., wire).

Usage: py_contenders.py DRIVER METRIC N
Prints {"samples_us": [...], "peak_rss_kib": N, "threads_per_vm": X, ...},
the same report and the same metrics as the C contenders (bench/bench.h).
"""

import asyncio
import json
import os
import socket
import subprocess
import sys
import threading
import time

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QEMU = os.environ.get("QEMU", "qemu-system-x86_64")
BASE_ARGS = ["-display", "none", "-vga", "none", "-nodefaults", "-machine", "none",
             "-accel", "tcg"]


def qemu_argv(theirs):
    """QEMU's command line, its monitor on our socketpair end `theirs`."""
    return [QEMU] + BASE_ARGS + ["-chardev", f"socket,id=mon,fd={theirs.fileno()}",
                                 "-mon", "chardev=mon,mode=control"]


def spawn_qemu():
    """Start QEMU with subprocess.Popen (vfork), its monitor on a
    socketpair; returns the process and our end of the socket."""
    ours, theirs = socket.socketpair()
    proc = subprocess.Popen(
        qemu_argv(theirs), pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    theirs.close()
    return proc, ours


class QemuMachineDriver:
    """qemu-machine through its Python binding."""

    def __init__(self):
        sys.path.insert(0, os.path.join(TOP, "bindings", "python"))
        from qemu_machine import Machine  # pylint: disable=import-outside-toplevel
        self.machine = Machine

    def launch(self):
        vm = self.machine(QEMU, ["-nodefaults", "-accel", "tcg"], machine_type="none")
        vm.launch()
        return vm

    @staticmethod
    def command(vm, cmd):
        return vm.command(cmd, timeout=30)

    @staticmethod
    def event_wait(vm, name):
        vm.event_wait(name, timeout=30)

    @staticmethod
    def shutdown(vm):
        vm.shutdown(timeout=30)
        vm.close()


class QemuQmpDriver:
    """qemu.qmp's synchronous legacy client, QEMU started with a socketpair
    as QEMUMachine does."""

    def __init__(self):
        from qemu.qmp.legacy import QEMUMonitorProtocol  # pylint: disable=import-outside-toplevel
        self.protocol = QEMUMonitorProtocol

    def launch(self):
        proc, ours = spawn_qemu()
        qmp = self.protocol(ours)
        qmp.connect(negotiate=True)
        return proc, qmp

    @staticmethod
    def command(vm, cmd):
        return vm[1].cmd(cmd)

    @staticmethod
    def event_wait(vm, name):
        while vm[1].pull_event(wait=30.0)["event"] != name:
            pass

    @staticmethod
    def shutdown(vm):
        proc, qmp = vm
        try:
            qmp.cmd("quit")
        except EOFError:
            # QEMU may close the connection before qemu.qmp has read the
            # reply; QEMUMachine tolerates this the same way.
            pass
        try:
            qmp.close()
        except EOFError:
            pass
        proc.wait(timeout=30)


class QemuMachineAsyncDriver:
    """qemu-machine's asyncio API: AsyncMachine, no thread per machine or
    per command."""

    is_async = True

    def __init__(self):
        sys.path.insert(0, os.path.join(TOP, "bindings", "python"))
        from qemu_machine.aio import AsyncMachine  # pylint: disable=import-outside-toplevel
        self.machine = AsyncMachine

    async def launch(self):
        vm = self.machine(QEMU, ["-nodefaults", "-accel", "tcg"], machine_type="none")
        await vm.launch()
        return vm

    @staticmethod
    async def command(vm, cmd):
        return await vm.command(cmd, timeout=30)

    @staticmethod
    async def shutdown(vm):
        await vm.shutdown(timeout=30)
        vm.close()


class QmpAsyncDriver:
    """qemu.qmp's asyncio QMPClient; QMPClient.connect() takes a connected
    socket, here our end of a socketpair. Its methods are coroutines."""

    is_async = True

    def __init__(self):
        from qemu.qmp import QMPClient  # pylint: disable=import-outside-toplevel
        self.client = QMPClient

    async def launch(self):
        ours, theirs = socket.socketpair()
        proc = await asyncio.create_subprocess_exec(
            *qemu_argv(theirs), pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        theirs.close()
        qmp = self.client()
        await qmp.connect(ours)
        return proc, qmp

    @staticmethod
    async def command(vm, cmd):
        return await vm[1].execute(cmd)

    @staticmethod
    async def shutdown(vm):
        from qemu.qmp import ExecInterruptedError  # pylint: disable=import-outside-toplevel
        proc, qmp = vm
        try:
            await qmp.execute("quit")
        except ExecInterruptedError:
            pass  # QEMU closed the connection before the reply was read
        try:
            await qmp.disconnect()
        except EOFError:
            # The reader saw QEMU hang up first; QEMUMachine tolerates
            # this the same way.
            pass
        await proc.wait()


class PopenDriver:
    """subprocess.Popen (which uses vfork) and a minimal QMP exchange: the
    greeting, then qmp_capabilities in its shortest form."""

    def launch(self):
        proc, ours = spawn_qemu()
        vm = [proc, ours, b""]
        self.read_line(vm)  # the greeting
        self.command(vm, "qmp_capabilities")
        return vm

    @staticmethod
    def read_line(vm):
        while b"\n" not in vm[2]:
            data = vm[1].recv(65536)
            if not data:
                raise EOFError("QEMU closed the connection")
            vm[2] += data
        line, vm[2] = vm[2].split(b"\n", 1)
        return line

    def command(self, vm, cmd):
        vm[1].sendall(b'{"execute":"%s"}' % cmd.encode())
        while True:
            line = self.read_line(vm)
            if line.startswith((b'{"return"', b'{"error"')):
                return json.loads(line)["return"]

    @staticmethod
    def shutdown(vm):
        proc, sock, _ = vm
        sock.sendall(b'{"execute":"quit"}')
        while sock.recv(65536):
            pass
        sock.close()
        proc.wait(timeout=30)


def now_us():
    return time.monotonic_ns() / 1000.0


def status_field(name):
    """A numeric field of /proc/self/status ("Threads:", "VmHWM:")."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith(name):
                return int(line.split()[1])
    return -1


def threads_now():
    return status_field("Threads:")


def metric_cycle(d, n):
    samples = []
    for _ in range(n):
        t = now_us()
        d.shutdown(d.launch())
        samples.append(now_us() - t)
    return samples, 0.0


def metric_rtt(d, n):
    vm = d.launch()
    for _ in range(200):
        d.command(vm, "query-status")
    samples = []
    for _ in range(n):
        t = now_us()
        d.command(vm, "query-status")
        samples.append(now_us() - t)
    d.shutdown(vm)
    return samples, 0.0


def metric_schema(d, n):
    vm = d.launch()
    samples = []
    for i in range(n + 2):
        t = now_us()
        schema = d.command(vm, "query-qmp-schema")  # parsed JSON
        if len(schema) < 100:
            raise RuntimeError("query-qmp-schema is too short")
        if i >= 2:
            samples.append(now_us() - t)
    d.shutdown(vm)
    return samples, 0.0


def metric_stop(d, n):
    vm = d.launch()
    samples = []
    for i in range(n + 5):
        t = now_us()
        d.command(vm, "stop")
        d.event_wait(vm, "STOP")
        if i >= 5:
            samples.append(now_us() - t)
        d.command(vm, "cont")
        d.event_wait(vm, "RESUME")
    d.shutdown(vm)
    return samples, 0.0


def run_threads(count, target):
    threads = [threading.Thread(target=target, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def metric_vm16(d, n):
    def one(_):
        vm = d.launch()
        for _ in range(100):
            d.command(vm, "query-status")
        d.shutdown(vm)

    samples = []
    for _ in range(n):
        t = now_us()
        run_threads(16, one)
        samples.append(now_us() - t)
    return samples, 0.0


def metric_wire(d, n):
    """Launch, n query-status, shut down: bench.py runs this under strace
    twice, with two values of n, and counts the bytes sent on the socket."""
    vm = d.launch()
    for _ in range(n):
        d.command(vm, "query-status")
    d.shutdown(vm)
    return [], 0.0


def metric_ready(d, n, sizes):
    """launch -> QMP ready while the launching process holds GiB of touched
    memory, as bench/bench.h does it: one process per size (this one holds
    the first, forked children the others, before any launch; bytes
    repetition fills the memory with memset), taking turns one launch each
    around a ring of pipes. n timed launches (after one untimed) per size;
    the shutdown is not timed."""
    k = len(sizes)
    ring = [os.pipe() for _ in range(k)]
    results_r, results_w = os.pipe()
    sys.stdout.flush()

    def turns(index):
        token_in, token_out = ring[index][0], ring[(index + 1) % k][1]
        samples = []
        for i in range(n + 1):
            if index != 0 or i > 0:
                if os.read(token_in, 1) != b"t":
                    raise RuntimeError("ready: lost the token")
            t = now_us()
            vm = d.launch()
            if i >= 1:
                samples.append(now_us() - t)
            d.shutdown(vm)
            os.write(token_out, b"t")
        return samples

    kids = []
    for index in range(1, k):
        pid = os.fork()
        if pid == 0:
            try:
                os.close(results_r)
                held = b"\x01" * (sizes[index] << 30) if sizes[index] else b""
                os.write(results_w, b"r")
                report = json.dumps([index, turns(index)]).encode() + b"\n"
                os.write(results_w, report)
                del held
            finally:
                os._exit(0)  # pylint: disable=protected-access
        kids.append(pid)
    os.close(results_w)
    held = b"\x01" * (sizes[0] << 30) if sizes[0] else b""
    with os.fdopen(results_r, "rb") as results:
        for _ in range(1, k):
            if results.read(1) != b"r":
                raise RuntimeError("ready: a holder died")
        series = {str(sizes[0]): turns(0)}
        if k > 1 and os.read(ring[0][0], 1) != b"t":  # the last turn
            raise RuntimeError("ready: lost the token")
        for _ in range(1, k):
            index, samples = json.loads(results.readline())
            series[str(sizes[index])] = samples
    del held
    for pid in kids:
        os.waitpid(pid, 0)
    return series


async def async_metric_rtt(d, n):
    vm = await d.launch()
    for _ in range(200):
        await d.command(vm, "query-status")
    samples = []
    for _ in range(n):
        t = now_us()
        await d.command(vm, "query-status")
        samples.append(now_us() - t)
    await d.shutdown(vm)
    return samples, 0.0


async def async_metric_vm16(d, n):
    """16 machines at once in one event loop, 100 commands each."""
    async def one():
        vm = await d.launch()
        for _ in range(100):
            await d.command(vm, "query-status")
        await d.shutdown(vm)

    samples = []
    for _ in range(n):
        t = now_us()
        await asyncio.gather(*(one() for _ in range(16)))
        samples.append(now_us() - t)
    return samples, 0.0


async def async_metric_wire(d, n):
    vm = await d.launch()
    for _ in range(n):
        await d.command(vm, "query-status")
    await d.shutdown(vm)
    return [], 0.0


def metric_vm64(d, n):
    vms, workers = 64, 8
    samples, per_vm = [], 0.0
    for _ in range(n):
        up = [None] * vms
        before = threads_now()
        t = now_us()

        def launch_some(w):
            for i in range(w, vms, workers):
                up[i] = d.launch()

        def shutdown_some(w):
            for i in range(w, vms, workers):
                d.shutdown(up[i])

        run_threads(workers, launch_some)
        per_vm = (threads_now() - before) / vms
        for vm in up:
            d.command(vm, "query-status")
        run_threads(workers, shutdown_some)
        samples.append(now_us() - t)
    return samples, per_vm


METRICS = {
    "cycle": metric_cycle,
    "rtt": metric_rtt,
    "schema": metric_schema,
    "stop": metric_stop,
    "vm16": metric_vm16,
    "vm64": metric_vm64,
    "wire": metric_wire,
}
ASYNC_METRICS = {
    "rtt": async_metric_rtt,
    "vm16": async_metric_vm16,
    "wire": async_metric_wire,
}

DRIVERS = {
    "qemu-machine": QemuMachineDriver,
    "qemu.qmp": QemuQmpDriver,
    "qemu.qmp-async": QmpAsyncDriver,
    "qemu-machine-asyncio": QemuMachineAsyncDriver,
    "popen": PopenDriver,
}


def main():
    if len(sys.argv) != 4 or sys.argv[1] not in DRIVERS:
        sys.exit(__doc__)
    driver = DRIVERS[sys.argv[1]]()
    metric, n = sys.argv[2], int(sys.argv[3])
    samples, per_vm, series = [], 0.0, {}
    if getattr(driver, "is_async", False):
        if metric not in ASYNC_METRICS:
            sys.exit(f"{sys.argv[1]} does not run {metric}")
        samples, per_vm = asyncio.run(ASYNC_METRICS[metric](driver, n))
    elif metric.startswith("ready") and metric[5:6].isdigit():
        series = metric_ready(driver, n, [int(x) for x in metric[5:].split(",")])
    elif metric in METRICS:
        samples, per_vm = METRICS[metric](driver, n)
    else:
        sys.exit(__doc__)
    # VmHWM, not ru_maxrss: exec keeps the maximum of the image it replaced.
    rss = status_field("VmHWM:")
    print(json.dumps({"samples_us": samples, "peak_rss_kib": rss, "threads_per_vm": per_vm,
                      "fds_per_vm": 0.0, "series": series}))


if __name__ == "__main__":
    main()
