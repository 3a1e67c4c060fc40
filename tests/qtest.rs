//! qtest against a real `qemu-system-x86_64 -machine pc -accel qtest`:
//! the CMOS RTC (the checks of QEMU's own tests/qtest/rtc-test.c), PCI
//! configuration space, guest RAM, the virtual clock, IRQ interception,
//! and faults. (A fake qtest peer's faults are in `faults.rs`.)

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use qemu_machine::{Error, Machine};

fn launched_qtest() -> Machine {
    let m = Machine::new(qtest_config());
    m.launch().expect("launch under qtest");
    m
}

const RTC_SECONDS: u8 = 0x00;
const RTC_REG_A: u8 = 0x0a;
const RTC_REG_B: u8 = 0x0b;
const RTC_REG_C: u8 = 0x0c;

fn cmos_read(m: &Machine, reg: u8) -> u8 {
    m.qtest_out(0x70, 1, u32::from(reg)).unwrap();
    m.qtest_in(0x71, 1).unwrap() as u8
}

fn cmos_write(m: &Machine, reg: u8, value: u8) {
    m.qtest_out(0x70, 1, u32::from(reg)).unwrap();
    m.qtest_out(0x71, 1, u32::from(value)).unwrap();
}

fn bcd(value: u8) -> u8 {
    (value >> 4) * 10 + (value & 0x0f)
}

#[test]
fn rtc_date_registers_and_the_virtual_clock() {
    let m = launched_qtest();
    // Binary mode, 24 hours (register B: DM, 24/12).
    let b = cmos_read(&m, RTC_REG_B);
    cmos_write(&m, RTC_REG_B, b | 0x06);
    let month = cmos_read(&m, 0x08);
    let day = cmos_read(&m, 0x07);
    assert!((1..=12).contains(&month), "month {month}");
    assert!((1..=31).contains(&day), "day {day}");
    // The seconds follow the virtual clock, stepped by hand.
    let before = cmos_read(&m, RTC_SECONDS);
    let now = m.qtest_clock_step(Some(3_000_000_000)).unwrap();
    assert!(now >= 3_000_000_000, "{now}");
    let after = cmos_read(&m, RTC_SECONDS);
    let advanced = (u32::from(after) + 60 - u32::from(before)) % 60;
    assert!((2..=4).contains(&advanced), "{before} -> {after}");
    // clock_set moves it to an absolute time.
    let later = m.qtest_clock_set(now + 10_000_000_000).unwrap();
    assert_eq!(later, now + 10_000_000_000);
    let again = cmos_read(&m, RTC_SECONDS);
    assert!((u32::from(again) + 60 - u32::from(after)) % 60 >= 9);
    // BCD mode gives the same seconds, encoded.
    cmos_write(&m, RTC_REG_B, cmos_read(&m, RTC_REG_B) & !0x04);
    let in_bcd = cmos_read(&m, RTC_SECONDS);
    assert!(bcd(in_bcd) < 60, "{in_bcd:#x}");
    m.shutdown(SHORT).unwrap();
}

#[test]
fn rtc_periodic_interrupt_raises_irq_8() {
    let m = launched_qtest();
    m.qtest_irq_intercept_in("ioapic").unwrap();
    assert!(!m.qtest_get_irq(8).unwrap());
    // Rate 1024 Hz (register A: divider on, rate 6), periodic interrupts on
    // (register B: PIE).
    cmos_write(&m, RTC_REG_A, 0x26);
    cmos_write(&m, RTC_REG_B, cmos_read(&m, RTC_REG_B) | 0x40);
    m.qtest_clock_step(Some(2_000_000)).unwrap();
    assert!(m.qtest_get_irq(8).unwrap(), "IRQ 8 raised");
    // Reading register C acknowledges it: the line goes down.
    let c = cmos_read(&m, RTC_REG_C);
    assert_ne!(c & 0x40, 0, "PF set in register C: {c:#x}");
    assert!(!m.qtest_get_irq(8).unwrap(), "IRQ 8 lowered");
    m.shutdown(SHORT).unwrap();
}

#[test]
fn pci_host_bridge_ids() {
    let m = launched_qtest();
    m.qtest_out(0xcf8, 4, 0x8000_0000).unwrap();
    let id = m.qtest_in(0xcfc, 4).unwrap();
    assert_eq!(id & 0xffff, 0x8086, "vendor");
    assert_eq!(id >> 16, 0x1237, "device");
    m.shutdown(SHORT).unwrap();
}

#[test]
fn guest_ram_memwrite_memread_sized_reads_and_memset() {
    let m = launched_qtest();
    let base = 0x10_0000u64;
    let data = noise(1 << 20, 7);
    m.qtest_memwrite(base, &data).unwrap();
    let mut back = vec![0u8; data.len()];
    m.qtest_memread(base, &mut back).unwrap();
    assert!(back == data, "1 MiB round trip");
    for (offset, size) in [(0usize, 1u32), (8, 2), (16, 4), (24, 8), (4097, 8)] {
        let mut want = [0u8; 8];
        want[..size as usize].copy_from_slice(&data[offset..offset + size as usize]);
        assert_eq!(
            m.qtest_read(base + offset as u64, size).unwrap(),
            u64::from_le_bytes(want),
            "{size} bytes at {offset}"
        );
    }
    m.qtest_write(base, 8, 0x1122_3344_5566_7788).unwrap();
    assert_eq!(m.qtest_read(base, 4).unwrap(), 0x5566_7788);
    m.qtest_memset(base, 0xab, 4096).unwrap();
    let mut page = vec![0u8; 4096];
    m.qtest_memread(base, &mut page).unwrap();
    assert!(page.iter().all(|&b| b == 0xab));
    assert_eq!(m.qtest_raw("endianness").unwrap(), "OK little");
    m.shutdown(SHORT).unwrap();
}

#[test]
fn clock_step_without_a_time_goes_to_the_next_deadline() {
    let m = launched_qtest();
    let start = m.qtest_clock_step(Some(0)).unwrap();
    let next = m.qtest_clock_step(None).unwrap();
    assert!(next > start, "{start} -> {next}");
    m.shutdown(SHORT).unwrap();
}

#[test]
fn four_threads_on_disjoint_ranges() {
    let m = Arc::new(launched_qtest());
    let workers: Vec<_> = (0..4u64)
        .map(|t| {
            let m = Arc::clone(&m);
            std::thread::spawn(move || {
                let base = 0x20_0000 + t * 0x10_0000;
                for round in 0..20 {
                    let data = noise(8192, t * 100 + round);
                    m.qtest_memwrite(base, &data).unwrap();
                    let mut back = vec![0u8; data.len()];
                    m.qtest_memread(base, &mut back).unwrap();
                    assert!(back == data, "thread {t} round {round}");
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    m.shutdown(SHORT).unwrap();
}

#[test]
fn killed_or_stopped_qemu_during_qtest_calls() {
    // Stopped: calls time out within the qtest timeout.
    let mut config = qtest_config();
    config.qtest_timeout(ms(300));
    let m = Arc::new(Machine::new(config));
    m.launch().unwrap();
    let pid = m.pid().unwrap();
    signal(pid, libc::SIGSTOP);
    let t = Instant::now();
    let err = m.qtest_read(0, 4).unwrap_err();
    assert!(matches!(err, Error::Timeout(_)), "{err}");
    assert!(t.elapsed() < slack(Duration::from_millis(800)));
    m.kill().unwrap();
    // Killed while a call waits: disconnected at once.
    let m = Arc::new(launched_qtest());
    let pid = m.pid().unwrap();
    signal(pid, libc::SIGSTOP);
    let call = {
        let m = Arc::clone(&m);
        std::thread::spawn(move || m.qtest_clock_step(Some(1000)))
    };
    std::thread::sleep(Duration::from_millis(200));
    let t = Instant::now();
    signal(pid, libc::SIGKILL);
    let err = call.join().unwrap().unwrap_err();
    assert!(matches!(err, Error::Disconnected(_)), "{err}");
    assert!(t.elapsed() < slack(Duration::from_secs(1)));
    let err = m.qtest_read(0, 4).unwrap_err();
    assert!(matches!(err, Error::Disconnected(_)), "{err}");
    let _ = m.shutdown(SHORT);
}

#[test]
fn without_the_accelerator_the_launch_says_why_and_tcg_keeps_io() {
    let mut config = qtest_config();
    config.env("QEMU_MODULE_DIR", None).unwrap();
    let err = Machine::new(config).launch().unwrap_err();
    assert!(matches!(err, Error::Launch(_)), "{err}");
    let msg = err.to_string();
    assert!(msg.contains("no qtest accelerator"), "{msg}");
    assert!(msg.contains("build-qtest-accel.sh"), "{msg}");
    // -accel tcg -S: memory, ports and IRQs; the clock says why not.
    let mut config = qemu_machine::Config::new(qemu_binary());
    config
        .machine_type("pc")
        .args(["-nodefaults", "-accel", "tcg", "-S"])
        .qtest();
    let m = Machine::new(config);
    m.launch().unwrap();
    m.qtest_out(0xcf8, 4, 0x8000_0000).unwrap();
    assert_eq!(m.qtest_in(0xcfc, 4).unwrap() & 0xffff, 0x8086);
    let err = m.qtest_clock_step(Some(1000)).unwrap_err();
    let Error::Command { class, desc, .. } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(class, "FAIL");
    assert!(desc.contains("needs the qtest accelerator"), "{desc}");
    m.shutdown(SHORT).unwrap();
}

#[test]
fn bad_input_is_refused_before_sending() {
    let m = launched_qtest();
    for bad in [
        m.qtest_read(0, 3).unwrap_err(),
        m.qtest_write(0, 1, 0x100).unwrap_err(),
        m.qtest_in(0x70, 8).unwrap_err(),
        m.qtest_out(0x70, 1, 0x1ff).unwrap_err(),
        m.qtest_irq_intercept_in("").unwrap_err(),
        m.qtest_irq_intercept_out("a b").unwrap_err(),
        m.qtest_set_irq_in("/machine/x", "a\nb", 0, 1).unwrap_err(),
        m.qtest_get_irq(-1).unwrap_err(),
        m.qtest_raw("").unwrap_err(),
        m.qtest_raw("clock_step  1").unwrap_err(),
        m.qtest_raw("readb 0\n").unwrap_err(),
        m.qtest_memwrite(u64::MAX, &[1, 2]).unwrap_err(),
    ] {
        assert!(matches!(bad, Error::InvalidArgument(_)), "{bad}");
    }
    // QEMU is unharmed.
    assert_eq!(m.qtest_raw("endianness").unwrap(), "OK little");
    let err = m.qtest_raw("no_such_command").unwrap_err();
    assert!(matches!(err, Error::Command { .. }), "{err}");
    // QMP works beside qtest.
    m.command("query-status", None, SHORT).unwrap();
    m.shutdown(SHORT).unwrap();
}

#[test]
fn qtest_calls_without_qtest_are_configuration_errors() {
    let m = launched_none();
    assert!(matches!(m.qtest_read(0, 1), Err(Error::AddDevice(_))));
    m.shutdown(SHORT).unwrap();
}
