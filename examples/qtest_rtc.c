/*
 * A device test without a guest: QEMU's CMOS RTC under qtest, through ports
 * 0x70/0x71, on a virtual clock the test steps. Usage: qtest_rtc [DIR], DIR
 * holding the qtest accelerator module (scripts/build-qtest-accel.sh).
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

#include <qemu_machine.h>

static qm_machine *m;

static void check(qm_status status, qm_error **err, const char *what) {
    if (status != QM_OK) {
        fprintf(stderr, "%s: %s\n", what, qm_error_message(*err));
        exit(1);
    }
}

static void expect(bool ok, const char *what) {
    printf("%-48s %s\n", what, ok ? "ok" : "FAILED");
    if (!ok) {
        exit(1);
    }
}

static uint8_t cmos_read(uint8_t reg) {
    qm_error *err = NULL;
    uint32_t value = 0;
    check(qm_qtest_out(m, 0x70, 1, reg, &err), &err, "outb 0x70");
    check(qm_qtest_in(m, 0x71, 1, &value, &err), &err, "inb 0x71");
    return (uint8_t)value;
}

static void cmos_write(uint8_t reg, uint8_t value) {
    qm_error *err = NULL;
    check(qm_qtest_out(m, 0x70, 1, reg, &err), &err, "outb 0x70");
    check(qm_qtest_out(m, 0x71, 1, value, &err), &err, "outb 0x71");
}

int main(int argc, char **argv) {
    const char *args[] = {"-nodefaults", "-rtc", "clock=vm"};
    qm_error *err = NULL;
    int64_t now = 0;
    bool irq = false;

    check(qm_machine_new("qemu-system-x86_64", &m, &err), &err, "qm_machine_new");
    check(qm_set_machine_type(m, "pc", &err), &err, "qm_set_machine_type");
    for (size_t i = 0; i < sizeof args / sizeof args[0]; i++) {
        check(qm_add_arg(m, args[i], &err), &err, "qm_add_arg");
    }
    check(qm_set_qtest(m, &err), &err, "qm_set_qtest");
    if (argc > 1) {
        check(qm_set_env(m, "QEMU_MODULE_DIR", argv[1], &err), &err, "qm_set_env");
    }
    check(qm_launch(m, &err), &err, "qm_launch");

    cmos_write(0x0b, cmos_read(0x0b) | 0x06); /* register B: binary, 24 hours */
    uint8_t before = cmos_read(0x00);
    check(qm_qtest_clock_step(m, 5000000000, &now, &err), &err, "clock_step");
    uint8_t after = cmos_read(0x00);
    printf("seconds: %u -> %u after 5 s of virtual time\n", before, after);
    expect((after + 60 - before) % 60 >= 4 && (after + 60 - before) % 60 <= 6, "seconds follow");

    check(qm_qtest_irq_intercept_in(m, "ioapic", &err), &err, "irq_intercept_in");
    cmos_write(0x0a, 0x26);                   /* register A: 1024 Hz */
    cmos_write(0x0b, cmos_read(0x0b) | 0x40); /* register B: periodic interrupt on */
    check(qm_qtest_clock_step(m, 2000000, NULL, &err), &err, "clock_step");
    check(qm_qtest_get_irq(m, 8, &irq, &err), &err, "get_irq");
    expect(irq, "IRQ 8 raised within 2 ms");
    expect(cmos_read(0x0c) & 0x40, "register C says periodic (and acknowledges)");
    check(qm_qtest_get_irq(m, 8, &irq, &err), &err, "get_irq");
    expect(!irq, "IRQ 8 lowered");

    check(qm_shutdown(m, 10000, &err), &err, "qm_shutdown");
    qm_machine_free(m);
    return 0;
}
