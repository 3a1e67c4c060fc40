"""Under qtest: read the RTC through ports 0x70/0x71, step the virtual clock,
and watch the RTC's periodic interrupt on IRQ 8."""
import sys

from qemu_machine import Machine

accel_dir = sys.argv[1]  # scripts/build-qtest-accel.sh prints it
with Machine(args=["-nodefaults", "-rtc", "clock=vm"], machine_type="pc",
             qtest=True, env={"QEMU_MODULE_DIR": accel_dir}) as vm:
    vm.launch()
    qt = vm.qtest

    def cmos(register, value=None):
        qt.outb(0x70, register)
        return qt.inb(0x71) if value is None else qt.outb(0x71, value)

    cmos(0x0B, cmos(0x0B) | 0x06)  # binary mode, 24 hours
    before = cmos(0x00)
    now = qt.clock_step(3_000_000_000)  # three virtual seconds
    print(f"seconds: {before} -> {cmos(0x00)}, virtual time {now} ns")
    qt.irq_intercept_in("ioapic")
    cmos(0x0A, 0x26)  # periodic rate 1024 Hz
    cmos(0x0B, cmos(0x0B) | 0x40)  # periodic interrupt on
    qt.clock_step(2_000_000)
    print("IRQ 8 raised:", qt.get_irq(8))
    cmos(0x0C)  # reading register C acknowledges the interrupt
    print("IRQ 8 after register C:", qt.get_irq(8))
