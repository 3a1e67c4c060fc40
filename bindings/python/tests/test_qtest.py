"""qtest on ``-machine pc -accel qtest`` with the accelerator module: the
CMOS RTC (the checks of QEMU's own rtc-test), the virtual clock, IRQ
interception, guest RAM, PCI configuration space, and bad input."""

import hashlib
import os
import signal
import threading
import time

import pytest
from support import QEMU

from qemu_machine import (
    AddDeviceError,
    CommandError,
    Disconnected,
    InvalidArgument,
    LaunchError,
    Machine,
    QTest,
    StateError,
    Timeout,
)

RTC_SECONDS = 0x00
RTC_REG_A = 0x0A
RTC_REG_B = 0x0B
RTC_REG_C = 0x0C


@pytest.fixture
def qt(new_qtest):
    """The qtest interface of a launched machine under qtest."""
    vm = new_qtest()
    vm.launch()
    return vm.qtest


def cmos_read(qt, reg):
    qt.outb(0x70, reg)
    return qt.inb(0x71)


def cmos_write(qt, reg, value):
    qt.outb(0x70, reg)
    qt.outb(0x71, value)


def test_rtc_and_the_virtual_clock(qt):
    assert isinstance(qt, QTest)
    # Binary mode, 24 hours.
    cmos_write(qt, RTC_REG_B, cmos_read(qt, RTC_REG_B) | 0x06)
    assert 1 <= cmos_read(qt, 0x08) <= 12  # month
    assert 1 <= cmos_read(qt, 0x07) <= 31  # day
    before = cmos_read(qt, RTC_SECONDS)
    now = qt.clock_step(3_000_000_000)
    assert now >= 3_000_000_000
    after = cmos_read(qt, RTC_SECONDS)
    assert 2 <= (after + 60 - before) % 60 <= 4
    later = qt.clock_set(now + 10_000_000_000)
    assert later == now + 10_000_000_000
    assert qt.clock_set(0) == later  # never goes back
    assert (cmos_read(qt, RTC_SECONDS) + 60 - after) % 60 >= 9
    # Without a time: to the next timer deadline.
    assert qt.clock_step() > later


def test_rtc_periodic_interrupt_raises_irq_8(qt):
    qt.irq_intercept_in("ioapic")
    assert not qt.get_irq(8)
    # 1024 Hz (register A rate 6), periodic interrupts on (register B PIE).
    cmos_write(qt, RTC_REG_A, 0x26)
    cmos_write(qt, RTC_REG_B, cmos_read(qt, RTC_REG_B) | 0x40)
    qt.clock_step(2_000_000)
    assert qt.get_irq(8)
    # Reading register C acknowledges it: the line goes down.
    assert cmos_read(qt, RTC_REG_C) & 0x40
    assert not qt.get_irq(8)


def test_rtc_output_line_intercepted(new_qtest):
    vm = new_qtest()
    vm.launch()
    rtc = next(
        "/machine/unattached/" + child["name"]
        for child in vm.command("qom-list", path="/machine/unattached")
        if child["type"] == "child<mc146818rtc>"
    )
    qt = vm.qtest
    qt.irq_intercept_out(rtc)
    assert not qt.get_irq(0)
    cmos_write(qt, RTC_REG_A, 0x26)
    cmos_write(qt, RTC_REG_B, cmos_read(qt, RTC_REG_B) | 0x40)
    qt.clock_step(2_000_000)
    assert qt.get_irq(0)


def test_set_irq_in(qt):
    # Intercepted, the IOAPIC's inputs record what is set on them.
    qt.irq_intercept_in("ioapic")
    qt.set_irq_in("ioapic", "unnamed-gpio-in", 4, 1)
    assert qt.get_irq(4)
    qt.set_irq_in("ioapic", "unnamed-gpio-in", 4, False)
    assert not qt.get_irq(4)
    with pytest.raises(CommandError) as info:
        qt.set_irq_in("/no/such/device", "unnamed-gpio-in", 0, 1)
    assert info.value.qmp_class in ("FAIL", "ERR")
    with pytest.raises(TypeError, match="level"):
        qt.set_irq_in("ioapic", "unnamed-gpio-in", 4, "1")


def test_memory_and_ports(qt):
    base = 0x10_0000
    data = hashlib.shake_256(b"qtest").digest(256 * 1024)
    qt.memwrite(base, data)
    assert qt.memread(base, len(data)) == data
    for offset, size in ((0, 1), (8, 2), (16, 4), (24, 8), (4097, 8)):
        want = int.from_bytes(data[offset : offset + size], "little")
        assert qt.read(base + offset, size) == want
    assert qt.readb(base) == data[0]
    assert qt.readw(base) == int.from_bytes(data[:2], "little")
    assert qt.readl(base) == int.from_bytes(data[:4], "little")
    assert qt.readq(base) == int.from_bytes(data[:8], "little")
    qt.write(base, 8, 0x1122334455667788)
    assert qt.readl(base) == 0x55667788
    qt.writeb(base, 0xAB)
    qt.writew(base + 2, 0xCDEF)
    qt.writel(base + 4, 0x01020304)
    qt.writeq(base + 8, 2**64 - 1)
    assert qt.memread(base, 16) == bytes.fromhex(
        "ab77efcd04030201ffffffffffffffff"
    )
    qt.memset(base, 0x5A, 4096)
    assert qt.memread(base, 4096) == b"\x5a" * 4096
    assert qt.memread(base, 0) == b""
    qt.memwrite(base, bytearray(b"xy"))
    assert qt.memread(base, 2) == b"xy"
    assert qt.raw("endianness") == "OK little"
    # PCI host bridge ids through the configuration ports.
    qt.outl(0xCF8, 0x8000_0000)
    ids = qt.inl(0xCFC)
    assert (ids & 0xFFFF, ids >> 16) == (0x8086, 0x1237)
    # 2-byte accesses: one to 0xCF8 is no configuration address (ignored).
    qt.outw(0xCF8, 0)
    assert qt.inw(0xCFC) == 0x8086


def test_errors_and_bad_input(qt):
    with pytest.raises(CommandError) as info:
        qt.raw("no-such-command")
    assert info.value.qmp_class in ("FAIL", "ERR")
    # Checked before anything is sent (QEMU aborts on malformed input).
    with pytest.raises(InvalidArgument):
        qt.raw("readb 0x0\nreadb 0x0")
    with pytest.raises(InvalidArgument, match="size"):
        qt.read(0, 3)
    with pytest.raises(InvalidArgument, match="size"):
        qt.port_in(0x71, 8)
    with pytest.raises(InvalidArgument):
        qt.writeb(0, 0x100)  # does not fit
    # Checked by the binding.
    with pytest.raises(InvalidArgument, match="addr"):
        qt.readb(-1)
    with pytest.raises(InvalidArgument, match="addr"):
        qt.readb(2**64)
    with pytest.raises(InvalidArgument, match="port"):
        qt.inb(65536)
    with pytest.raises(InvalidArgument, match="byte"):
        qt.memset(0, 256, 1)
    with pytest.raises(InvalidArgument, match="ns"):
        qt.clock_step(-1)
    with pytest.raises(InvalidArgument, match="length"):
        qt.memread(0, -1)
    with pytest.raises(TypeError, match="addr"):
        qt.readb("0")
    with pytest.raises(TypeError, match="data"):
        qt.memwrite(0, "text")
    with pytest.raises(TypeError, match="qom_path"):
        qt.irq_intercept_in(None)
    with pytest.raises(InvalidArgument, match="NUL"):
        qt.raw("endianness\0")
    # Still usable.
    assert qt.raw("endianness") == "OK little"


def test_timeout_and_killed_qemu(new_qtest):
    vm = new_qtest(qtest_timeout=0.3)
    vm.launch()
    os.kill(vm.pid, signal.SIGSTOP)
    started = time.monotonic()
    with pytest.raises(Timeout):
        vm.qtest.readl(0)
    assert time.monotonic() - started < 3
    # Killed while a call waits: disconnected at once.
    errors = []

    def call():
        try:
            vm.qtest.clock_step(1000)
        except Disconnected as exc:
            errors.append(exc)
        except Timeout:
            errors.append("timeout")

    thread = threading.Thread(target=call)
    thread.start()
    time.sleep(0.1)
    os.kill(vm.pid, signal.SIGKILL)
    thread.join(5)
    assert not thread.is_alive()
    assert len(errors) == 1 and isinstance(errors[0], Disconnected), errors
    with pytest.raises(Disconnected):
        vm.qtest.readl(0)


def test_configuration(new_qtest, new_machine, qtest_accel_dir):
    # Without the accelerator module: the launch says why.
    vm = new_qtest(env={"QEMU_MODULE_DIR": None})
    with pytest.raises(LaunchError, match="build-qtest-accel.sh"):
        vm.launch()
    # -accel tcg -S: memory and ports work; the clock says why not.
    vm = new_machine(machine_type="pc", qtest=True)
    vm.add_args("-S")
    vm.launch()
    vm.qtest.outl(0xCF8, 0x8000_0000)
    assert vm.qtest.inl(0xCFC) & 0xFFFF == 0x8086
    with pytest.raises(CommandError, match="qtest accelerator"):
        vm.qtest.clock_step(1000)
    # No qtest: AddDeviceError once running, StateError before.
    vm = new_machine()
    with pytest.raises(StateError):
        vm.qtest.readb(0)
    vm.launch()
    with pytest.raises(AddDeviceError):
        vm.qtest.readb(0)
    with pytest.raises(StateError):
        vm.set_qtest()
    with pytest.raises(StateError):
        vm.set_qtest_timeout(1)
    # The keywords and the methods.
    vm = Machine(
        QEMU,
        ["-nodefaults"],
        machine_type="pc",
        env={"QEMU_MODULE_DIR": str(qtest_accel_dir)},
        qtest_timeout=None,
    )
    try:
        vm.set_qtest()
        vm.set_qtest_timeout(5)
        vm.launch()
        assert "qtest" in vm.command_line
        assert vm.qtest.clock_step(10) >= 10
    finally:
        vm.close()
    with pytest.raises(TypeError, match="qtest"):
        Machine(QEMU, qtest=1)
    with pytest.raises(TypeError, match="timeout"):
        Machine(QEMU, qtest=True, qtest_timeout="1")
    with pytest.raises(InvalidArgument, match="timeout"):
        Machine(QEMU, qtest=True, qtest_timeout=-1)
