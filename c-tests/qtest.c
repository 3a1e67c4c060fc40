/* qtest through the C API against a real `qemu-system-x86_64 -machine pc`:
 * under `-accel qtest` (the module from QM_TEST_QTEST_ACCEL_DIR) the CMOS
 * RTC's registers through ports 0x70/0x71, the virtual clock, the RTC's
 * periodic interrupt on IRQ 8 (ioapic inputs intercepted), the PCI host
 * bridge's ids, guest RAM (memwrite/memread/memset/read/write) and raw
 * lines; under `-accel tcg -S` the master PIC's output intercepted while
 * its input is set with set_irq_in, and the clock calls refused; and the
 * launch error when the accelerator module is missing. */
#include "qm_test.h"

#define RTC_SECONDS 0x00
#define RTC_DAY 0x07
#define RTC_MONTH 0x08
#define RTC_REG_A 0x0a
#define RTC_REG_B 0x0b
#define RTC_REG_C 0x0c

static uint8_t cmos_read(qm_machine *m, uint8_t reg) {
    uint32_t value = 0x1ff;
    OK(qm_qtest_out, m, 0x70, 1, reg);
    OK(qm_qtest_in, m, 0x71, 1, &value);
    CHECK(value <= 0xff);
    return (uint8_t)value;
}

static void cmos_write(qm_machine *m, uint8_t reg, uint8_t value) {
    OK(qm_qtest_out, m, 0x70, 1, reg);
    OK(qm_qtest_out, m, 0x71, 1, value);
}

static int bcd_to_int(uint8_t v) {
    return (v >> 4) * 10 + (v & 0x0f);
}

static void rtc_registers_and_the_clock(qm_machine *m) {
    uint8_t before, after, again, bcd;
    int64_t now = -1, later = -1;

    /* Binary mode, 24 hours (register B: DM and 24/12). */
    cmos_write(m, RTC_REG_B, cmos_read(m, RTC_REG_B) | 0x06);
    CHECK(cmos_read(m, RTC_MONTH) >= 1 && cmos_read(m, RTC_MONTH) <= 12);
    CHECK(cmos_read(m, RTC_DAY) >= 1 && cmos_read(m, RTC_DAY) <= 31);

    /* The seconds follow the virtual clock, stepped by hand. */
    before = cmos_read(m, RTC_SECONDS);
    OK(qm_qtest_clock_step, m, 3000000000LL, &now);
    CHECK(now >= 3000000000LL);
    after = cmos_read(m, RTC_SECONDS);
    CHECK((after + 60 - before) % 60 >= 2 && (after + 60 - before) % 60 <= 4);

    /* clock_set: to an absolute time, never back. */
    OK(qm_qtest_clock_set, m, now + 10000000000LL, &later);
    CHECK(later == now + 10000000000LL);
    again = cmos_read(m, RTC_SECONDS);
    CHECK((again + 60 - after) % 60 >= 9);
    OK(qm_qtest_clock_set, m, 0, &now);
    CHECK(now == later);
    /* Without a step: to the next timer deadline; NULL discards the time. */
    OK(qm_qtest_clock_step, m, -1, &now);
    CHECK(now > later);
    OK(qm_qtest_clock_step, m, 0, NULL);

    /* BCD mode: the same seconds, encoded. */
    cmos_write(m, RTC_REG_B, cmos_read(m, RTC_REG_B) & ~0x04);
    bcd = cmos_read(m, RTC_SECONDS);
    CHECK((bcd & 0x0f) <= 9 && bcd_to_int(bcd) < 60);
    printf("qtest: RTC seconds %d -> %d -> %d over 13 virtual seconds\n", before, after, again);
}

static void periodic_interrupt_on_irq_8(qm_machine *m) {
    bool raised = true;
    uint8_t c;
    OK(qm_qtest_irq_intercept_in, m, "ioapic");
    OK(qm_qtest_get_irq, m, 8, &raised);
    CHECK(!raised);
    /* 1024 Hz (register A: divider on, rate 6), periodic interrupts on
     * (register B: PIE). */
    cmos_write(m, RTC_REG_A, 0x26);
    cmos_write(m, RTC_REG_B, cmos_read(m, RTC_REG_B) | 0x40);
    OK(qm_qtest_clock_step, m, 2000000, NULL);
    OK(qm_qtest_get_irq, m, 8, &raised);
    CHECK(raised);
    /* Reading register C acknowledges it: PF set, the line goes down. */
    c = cmos_read(m, RTC_REG_C);
    CHECK((c & 0x40) != 0);
    OK(qm_qtest_get_irq, m, 8, &raised);
    CHECK(!raised);
    OK(qm_qtest_get_irq, m, 8, NULL);

    /* set_irq_in on an intercepted input: reported like a device's. */
    OK(qm_qtest_set_irq_in, m, "ioapic", "unnamed-gpio-in", 5, 1);
    OK(qm_qtest_get_irq, m, 5, &raised);
    CHECK(raised);
    OK(qm_qtest_set_irq_in, m, "ioapic", "unnamed-gpio-in", 5, 0);
    OK(qm_qtest_get_irq, m, 5, &raised);
    CHECK(!raised);

    /* One device per run: intercepting another is QEMU's FAIL. */
    {
        qm_error *e = EXPECT(QM_ERR_COMMAND, qm_qtest_irq_intercept_out, m, "/machine/i440fx");
        CHECK(strcmp(qm_error_qmp_class(e), "FAIL") == 0);
        qm_error_free(e);
    }
    printf("qtest: RTC periodic interrupt raised and acknowledged on IRQ 8\n");
}

static void pci_host_bridge(qm_machine *m) {
    uint32_t id = 0;
    OK(qm_qtest_out, m, 0xcf8, 4, 0x80000000u);
    OK(qm_qtest_in, m, 0xcfc, 4, &id);
    CHECK((id & 0xffff) == 0x8086);
    CHECK(id >> 16 == 0x1237);
    /* 16 bits of the vendor id alone. */
    OK(qm_qtest_in, m, 0xcfc, 2, &id);
    CHECK(id == 0x8086);
    OK(qm_qtest_in, m, 0xcfc, 1, NULL);
    printf("qtest: PCI host bridge %04x:%04x\n", 0x8086, 0x1237);
}

static void noise(uint8_t *buf, size_t len, uint64_t seed) {
    uint64_t x = seed | 1;
    size_t i;
    for (i = 0; i < len; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        buf[i] = (uint8_t)x;
    }
}

static void guest_ram(qm_machine *m) {
    enum { SIZE = 256 * 1024 };
    const uint64_t base = 0x100000;
    static const unsigned sizes[] = {1, 2, 4, 8};
    static const size_t offsets[] = {0, 8, 16, 4097};
    uint8_t *data = malloc(SIZE), *back = malloc(SIZE);
    uint64_t value = 0;
    size_t i, k;
    char *reply = NULL;

    CHECK(data != NULL && back != NULL);
    noise(data, SIZE, 7);
    OK(qm_qtest_memwrite, m, base, data, SIZE);
    memset(back, 0, SIZE);
    OK(qm_qtest_memread, m, base, back, SIZE);
    CHECK(memcmp(back, data, SIZE) == 0);

    /* Sized reads: little-endian, at odd offsets too. */
    for (i = 0; i < sizeof offsets / sizeof offsets[0]; i++) {
        for (k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
            uint64_t want = 0;
            unsigned b;
            for (b = 0; b < sizes[k]; b++) {
                want |= (uint64_t)data[offsets[i] + b] << (8 * b);
            }
            OK(qm_qtest_read, m, base + offsets[i], sizes[k], &value);
            CHECK(value == want);
        }
    }
    OK(qm_qtest_write, m, base, 8, 0x1122334455667788ULL);
    OK(qm_qtest_read, m, base, 4, &value);
    CHECK(value == 0x55667788);
    OK(qm_qtest_read, m, base + 4, 2, &value);
    CHECK(value == 0x3344);
    OK(qm_qtest_write, m, base + 1, 1, 0xab);
    OK(qm_qtest_read, m, base, 2, &value);
    CHECK(value == 0xab88);
    OK(qm_qtest_write, m, base, 2, 0xffff);
    OK(qm_qtest_write, m, base, 4, 0xffffffffu);
    OK(qm_qtest_read, m, base, 1, NULL);

    OK(qm_qtest_memset, m, base, 0x5a, 4096);
    OK(qm_qtest_memread, m, base, back, 4097);
    for (i = 0; i < 4096; i++) {
        CHECK(back[i] == 0x5a);
    }
    CHECK(back[4096] == data[4096]);
    /* Empty ranges are fine. */
    OK(qm_qtest_memset, m, base, 0, 0);
    OK(qm_qtest_memwrite, m, base, NULL, 0);
    OK(qm_qtest_memread, m, base, NULL, 0);

    OK(qm_qtest_raw, m, "endianness", &reply);
    CHECK(strcmp(reply, "OK little") == 0);
    qm_string_free(reply);
    OK(qm_qtest_raw, m, "writeb 0x100000 0x42", NULL);
    OK(qm_qtest_raw, m, "readb 0x100000", &reply);
    CHECK(strcmp(reply, "OK 0x0000000000000042") == 0);
    qm_string_free(reply);
    {
        qm_error *e = EXPECT(QM_ERR_COMMAND, qm_qtest_raw, m, "no_such_command", &reply);
        CHECK(strcmp(qm_error_qmp_class(e), "FAIL") == 0);
        CHECK(qm_error_qmp_desc(e) != NULL);
        qm_error_free(e);
    }
    free(data);
    free(back);
    printf("qtest: %d KiB of guest RAM round-tripped\n", SIZE / 1024);
}

/* The master PIC (I/O base 0x20) among the machine's unattached devices. */
static void master_pic_path(qm_machine *m, char *path, size_t size) {
    char *list = NULL;
    const char *p;
    OK(qm_command, m, "qom-list", "{\"path\": \"/machine/unattached\"}", 10000, &list);
    for (p = strstr(list, "child<isa-i8259>"); p != NULL;
         p = strstr(p + 1, "child<isa-i8259>")) {
        /* {"name": "device[N]", "type": "child<isa-i8259>"} */
        const char *name = p;
        char args[256], *iobase = NULL;
        int len;
        while (name > list && strncmp(name, "device[", 7) != 0) name--;
        len = (int)(strchr(name, '"') - name);
        snprintf(path, size, "/machine/unattached/%.*s", len, name);
        snprintf(args, sizeof args, "{\"path\": \"%s\", \"property\": \"iobase\"}", path);
        OK(qm_command, m, "qom-get", args, 10000, &iobase);
        if (strcmp(iobase, "32") == 0) {
            qm_string_free(iobase);
            qm_string_free(list);
            return;
        }
        qm_string_free(iobase);
    }
    fprintf(stderr, "no master PIC in %s\n", list);
    exit(1);
}

/* -accel tcg -S: ports and IRQs work (no module needed); the clock is
 * refused, saying why. */
static void under_tcg(void) {
    qm_machine *m = NULL;
    char pic[256];
    bool raised = true;
    uint32_t id = 0;
    int64_t now = 77;
    qm_error *e;
    OK(qm_machine_new, qemu_binary(), &m);
    OK(qm_set_machine_type, m, "pc");
    OK(qm_add_arg, m, "-nodefaults");
    OK(qm_add_arg, m, "-accel");
    OK(qm_add_arg, m, "tcg");
    OK(qm_add_arg, m, "-S");
    OK(qm_set_qtest, m);
    OK(qm_set_qtest_timeout, m, 20000);
    OK(qm_launch, m);
    OK(qm_qtest_out, m, 0xcf8, 4, 0x80000000u);
    OK(qm_qtest_in, m, 0xcfc, 4, &id);
    CHECK((id & 0xffff) == 0x8086);

    /* The PIC's INT output, raised by an edge on its input 3. */
    master_pic_path(m, pic, sizeof pic);
    OK(qm_qtest_irq_intercept_out, m, pic);
    OK(qm_qtest_get_irq, m, 0, &raised);
    CHECK(!raised);
    OK(qm_qtest_set_irq_in, m, pic, "unnamed-gpio-in", 3, 1);
    OK(qm_qtest_get_irq, m, 0, &raised);
    CHECK(raised);
    printf("qtest: %s INT raised through set_irq_in\n", pic);

    e = EXPECT(QM_ERR_COMMAND, qm_qtest_clock_step, m, 1000, &now);
    CHECK(strcmp(qm_error_qmp_class(e), "FAIL") == 0);
    CHECK(strstr(qm_error_qmp_desc(e), "needs the qtest accelerator") != NULL);
    CHECK(now == 77);
    qm_error_free(e);
    FAILS(QM_ERR_COMMAND, qm_qtest_clock_set, m, 1000, &now);
    OK(qm_shutdown, m, 10000);
    qm_machine_free(m);
}

static void missing_accelerator(void) {
    qm_machine *m = new_qtest_machine();
    qm_error *e;
    /* Neither this process's environment nor the machine's names it. */
    OK(qm_set_env, m, "QEMU_MODULE_DIR", NULL);
    e = EXPECT(QM_ERR_LAUNCH, qm_launch, m);
    CHECK(strstr(qm_error_message(e), "no qtest accelerator") != NULL);
    CHECK(strstr(qm_error_message(e), "build-qtest-accel.sh") != NULL);
    qm_error_free(e);
    CHECK(!qm_is_running(m));
    qm_machine_free(m);
}

/* Configuration and state errors. */
static void state_errors(void) {
    qm_machine *m = none_machine();
    uint64_t value = 77;
    EXPECT_MSG(QM_ERR_STATE, "not been launched", qm_qtest_read, m, 0, 1, &value);
    OK(qm_launch, m);
    FAILS(QM_ERR_ADD_DEVICE, qm_qtest_read, m, 0, 1, &value);
    FAILS(QM_ERR_ADD_DEVICE, qm_qtest_raw, m, "endianness", NULL);
    FAILS(QM_ERR_STATE, qm_set_qtest, m);
    FAILS(QM_ERR_STATE, qm_set_qtest_timeout, m, 1000);
    CHECK(value == 77);
    OK(qm_shutdown, m, 10000);
    qm_machine_free(m);
}

int main(void) {
    qm_machine *m = new_qtest_machine();
    OK(qm_set_qtest_timeout, m, -1);
    OK(qm_set_qtest_timeout, m, 20000);
    OK(qm_launch, m);
    rtc_registers_and_the_clock(m);
    periodic_interrupt_on_irq_8(m);
    pci_host_bridge(m);
    guest_ram(m);
    /* QMP works beside qtest. */
    OK(qm_command, m, "query-status", NULL, 10000, NULL);
    OK(qm_shutdown, m, 10000);
    FAILS(QM_ERR_STATE, qm_qtest_raw, m, "endianness", NULL);
    qm_machine_free(m);

    under_tcg();
    missing_accelerator();
    state_errors();
    printf("qtest: ok\n");
    return 0;
}
