// The C++17 RAII layer (include/qemu_machine.hpp) against a real QEMU.
#include <qemu_machine.hpp>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <optional>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#include <poll.h>
#include <sys/wait.h>
#include <signal.h>
#include <unistd.h>

using namespace std::chrono_literals;

#define CHECK(cond)                                                                          \
    do {                                                                                     \
        if (!(cond)) {                                                                       \
            std::fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);   \
            std::exit(1);                                                                    \
        }                                                                                    \
    } while (0)

static_assert(!std::is_copy_constructible_v<qm::Machine>, "move-only");
static_assert(std::is_nothrow_move_constructible_v<qm::Machine>, "cheap moves");
static_assert(!std::is_copy_constructible_v<qm::Listener>, "move-only");
static_assert(std::is_nothrow_move_constructible_v<qm::Listener>, "cheap moves");

static std::string qemu() {
    const char *q = std::getenv("QM_TEST_QEMU");
    return q != nullptr ? q : "qemu-system-x86_64";
}

static qm::Machine none_machine() {
    qm::Machine vm(qemu());
    vm.set_machine_type("none").add_args({"-accel", "tcg", "-nodefaults"});
    return vm;
}

static bool contains(const std::string &haystack, const std::string &needle) {
    return haystack.find(needle) != std::string::npos;
}

/** Run `f`, require a qm::Error with `status`, return it. */
template <typename F> static qm::Error expect_error(qm_status status, F f) {
    try {
        f();
    } catch (const qm::Error &e) {
        if (e.status() != status) {
            std::fprintf(stderr, "expected status %d, got %d: %s\n", int(status),
                         int(e.status()), e.what());
            std::exit(1);
        }
        return e;
    }
    std::fprintf(stderr, "expected an error with status %d\n", int(status));
    std::exit(1);
}

static void lifecycle_and_qmp() {
    qm::Machine vm = none_machine();
    vm.launch();
    CHECK(vm.is_running() && vm.pid() > 0);
    CHECK(contains(vm.command("query-status"), "\"status\"") &&
          contains(vm.command("query-status"), "running"));
    CHECK(contains(vm.qmp("query-status"), "\"return\""));
    CHECK(contains(vm.command("qom-get", R"({"path": "/machine", "property": "type"})"),
                   "none-machine"));

    qm::Error e = expect_error(QM_ERR_COMMAND, [&] { vm.command("no-such-command"); });
    CHECK(e.qmp_class() == "CommandNotFound");
    CHECK(contains(e.qmp_desc(), "no-such-command"));
    CHECK(contains(e.what(), e.qmp_desc()));

    vm.command("stop");
    CHECK(contains(vm.event_wait("STOP", "", 5s), "\"STOP\""));
    vm.command("cont");
    CHECK(contains(vm.event_wait("RESUME", R"({"timestamp": null})", 5s), "\"RESUME\""));
    expect_error(QM_ERR_TIMEOUT, [&] { vm.event_wait("NEVER", "", 0ms); });
    vm.command("stop");
    CHECK(contains(vm.events_wait(R"([["RESUME", null], ["STOP", null]])", 5s), "\"STOP\""));
    CHECK(vm.events_take() == "[]");
    expect_error(QM_ERR_INVALID_ARGUMENT, [&] { vm.command("query-status", "[1]"); });
    CHECK(qm::event_match(R"({"data": {"a": 1}})", R"({"data": {"a": null}})"));

    vm.shutdown(10s);
    CHECK(!vm.is_running());
    CHECK(vm.exit_code() == 0);
    CHECK(contains(vm.command_line(), "\"-machine\",\"none\""));
    vm.log();
}

static void launch_failure() {
    qm::Machine vm = none_machine();
    vm.add_arg("-bogus");
    qm::Error e = expect_error(QM_ERR_LAUNCH, [&] { vm.launch(); });
    CHECK(contains(e.what(), "-bogus: invalid option"));
    CHECK(e.qmp_class().empty());
    CHECK(vm.exit_code() == 1);
    expect_error(QM_ERR_INVALID_ARGUMENT, [] { qm::Machine bad(std::string("a\xff")); });
}

static void moves_transfer_ownership() {
    qm::Machine a = none_machine();
    a.launch();
    int pid = a.pid();
    qm::Machine b = std::move(a);
    CHECK(a.get() == nullptr);
    CHECK(b.pid() == pid);
    std::vector<qm::Machine> machines;
    machines.push_back(std::move(b));
    machines.emplace_back(none_machine());
    machines.back().launch();
    int other = machines.back().pid();
    // Move-assigning over a running machine frees (kills and reaps) it.
    machines[0] = std::move(machines[1]);
    CHECK(machines[0].pid() == other);
    CHECK(waitpid(pid, nullptr, WNOHANG) == -1); // reaped by the library
    machines.clear();                            // destructors kill and reap
    CHECK(waitpid(other, nullptr, WNOHANG) == -1);
}

static void threads_share_a_machine() {
    qm::Machine vm = none_machine();
    vm.launch();
    std::string stop;
    std::thread waiter([&] { stop = vm.event_wait("STOP", "", 10s); });
    std::vector<std::thread> talkers;
    for (int t = 0; t < 4; t++) {
        talkers.emplace_back([&] {
            for (int i = 0; i < 50; i++) {
                vm.command("query-status");
            }
        });
    }
    for (auto &t : talkers) {
        t.join();
    }
    vm.command("stop");
    waiter.join();
    CHECK(contains(stop, "\"STOP\""));
    vm.shutdown();
}

static bool readable(int fd) {
    pollfd p{fd, POLLIN, 0};
    return poll(&p, 1, 0) == 1 && (p.revents & POLLIN) != 0;
}

static void listeners_and_split_commands() {
    qm::Machine vm = none_machine();
    qm::Listener early(vm); // before the launch: sees every run
    vm.launch();
    CHECK(contains(vm.qmp_greeting(), "\"QMP\""));
    qm::Listener stops(vm, R"([["STOP", null]])");
    CHECK(!readable(stops.fd()));

    std::uint64_t a = vm.send("stop");
    std::uint64_t b = vm.send("query-status");
    CHECK(a != b);
    std::optional<std::string> status = vm.receive(b, 10s);
    CHECK(status && contains(*status, "\"paused\""));
    CHECK(contains(vm.receive(a, 10s).value(), "\"return\""));
    expect_error(QM_ERR_INVALID_ARGUMENT, [&] { vm.receive(a, 0ms); }); // consumed
    CHECK(readable(stops.fd()));
    CHECK(contains(stops.next(0ms).value(), "\"STOP\""));
    CHECK(!stops.next(0ms).has_value()); // a timeout is no error
    CHECK(!readable(stops.fd()));
    vm.command("cont");
    CHECK(stops.take() == "[]");
    std::string both = early.take();
    CHECK(contains(both, "\"STOP\"") && contains(both, "\"RESUME\""));
    CHECK(early.dropped() == 0);

    // A poll that keeps the ticket while QEMU cannot answer.
    CHECK(vm.fd() >= 0);
    kill(vm.pid(), SIGSTOP);
    std::uint64_t c = vm.send("query-status");
    CHECK(!vm.receive(c, 0ms).has_value());
    vm.dispatch();
    kill(vm.pid(), SIGCONT);
    CHECK(contains(vm.receive(c).value(), "\"running\""));

    // Moves; a listener outliving its machine.
    qm::Listener moved = std::move(early);
    CHECK(early.get() == nullptr);
    vm.command("stop");
    vm.shutdown(10s);
    CHECK(vm.fd() == -1);
    { qm::Machine gone = std::move(vm); } // freed here
    CHECK(contains(moved.next(0ms).value(), "\"STOP\""));
    CHECK(contains(moved.next(0ms).value(), "\"SHUTDOWN\""));
    expect_error(QM_ERR_DISCONNECTED, [&] { moved.next(qm::forever); });
}

static void qtest_session() {
    const char *module_dir = std::getenv("QM_TEST_QTEST_ACCEL_DIR");
    CHECK(module_dir != nullptr);
    qm::Machine vm(qemu());
    vm.set_machine_type("pc").add_args({"-nodefaults", "-rtc", "clock=vm"});
    vm.set_qtest().set_qtest_timeout(20s).set_env("QEMU_MODULE_DIR", module_dir);
    vm.set_env("QM_UNUSED", "x").unset_env("QM_UNUSED");
    vm.launch();

    // The PCI host bridge, through ports.
    vm.outl(0xcf8, 0x80000000u);
    CHECK(vm.inl(0xcfc) == 0x12378086u);
    CHECK(vm.inw(0xcfc) == 0x8086);
    CHECK(vm.inb(0xcfc) == 0x86);
    vm.outw(0xcf8, 0);
    vm.outb(0x80, 1);

    // Guest RAM.
    const std::uint64_t base = 0x100000;
    vm.writeq(base, 0x1122334455667788ull);
    CHECK(vm.readq(base) == 0x1122334455667788ull);
    CHECK(vm.readl(base) == 0x55667788u);
    CHECK(vm.readw(base + 2) == 0x5566);
    CHECK(vm.readb(base + 7) == 0x11);
    vm.writel(base, 0xdeadbeefu);
    vm.writew(base, 0x1234);
    vm.writeb(base, 0x56);
    CHECK(vm.readl(base) == 0xdead1256u);
    std::vector<std::uint8_t> data{0, 1, 2, 0xff, 0, 5};
    vm.memwrite(base, data);
    CHECK(vm.memread(base, data.size()) == data);
    vm.memset(base, 0xab, 3);
    std::uint8_t three[3] = {0, 0, 0};
    vm.memread(base, three, sizeof three);
    CHECK(three[0] == 0xab && three[2] == 0xab && vm.readb(base + 3) == 0xff);
    CHECK(vm.qtest_raw("endianness") == "OK little");

    // The RTC's periodic interrupt on IRQ 8, on the virtual clock.
    vm.irq_intercept_in("ioapic");
    CHECK(!vm.get_irq(8));
    vm.outb(0x70, 0x0a);
    vm.outb(0x71, 0x26);
    vm.outb(0x70, 0x0b);
    std::uint8_t b = vm.inb(0x71);
    vm.outb(0x70, 0x0b);
    vm.outb(0x71, static_cast<std::uint8_t>(b | 0x40));
    std::int64_t now = vm.clock_step(2000000);
    CHECK(now >= 2000000);
    CHECK(vm.get_irq(8));
    CHECK(vm.clock_set(now + 1000) == now + 1000);
    CHECK(vm.clock_step_next() > now + 1000);
    vm.set_irq_in("ioapic", "unnamed-gpio-in", 5, 1);
    CHECK(vm.get_irq(5));
    qm::Error e = expect_error(QM_ERR_COMMAND, [&] { vm.irq_intercept_out("/machine/i440fx"); });
    CHECK(e.qmp_class() == "FAIL");
    expect_error(QM_ERR_INVALID_ARGUMENT, [&] { vm.qtest_raw("readb  0"); });

    const std::string dir = "/tmp/qm-cpp-artifacts-" + std::to_string(getpid());
    vm.save_artifacts(dir);
    vm.shutdown(10s);
    vm.save_artifacts(dir);
    CHECK(std::system(("grep -q 'exited with status 0' " + dir + "/status.txt").c_str()) == 0);
    CHECK(std::system(("rm -rf " + dir).c_str()) == 0);
}

static void probes_and_migration() {
    CHECK(qm::probe(qemu(), "machine", "pc"));
    CHECK(!qm::probe(qemu(), "machine", "nonesuch"));
    CHECK(qm::probe(qemu(), "device", "virtio-serial-pci", 0ms)); // cached
    expect_error(QM_ERR_INVALID_ARGUMENT, [] { qm::probe(qemu(), "flavour", "x"); });

    auto machine = [](bool incoming) {
        qm::Machine vm(qemu());
        vm.set_machine_type("pc").add_args({"-accel", "tcg", "-m", "64", "-nodefaults"});
        if (incoming) {
            vm.add_args({"-incoming", "defer"});
        }
        vm.launch();
        return vm;
    };
    qm::Machine src = machine(false), dst = machine(true);
    qm::migrate(src, dst, 60s);
    CHECK(contains(dst.command("query-status"), "\"running\""));
    CHECK(contains(src.command("query-status"), "\"postmigrate\""));
    src.shutdown(10s);
    dst.shutdown(10s);
}

static void console_and_agent() {
    const char *dir = std::getenv("QM_TEST_GUEST_DIR");
    CHECK(dir != nullptr);
    qm::Machine vm(qemu());
    vm.add_args({"-accel", "tcg", "-m", "256", "-nodefaults", "-no-reboot", "-kernel",
                 std::string(dir) + "/vmlinux", "-initrd", std::string(dir) + "/initramfs.cpio.gz",
                 "-append", "console=ttyS0 panic=-1"});
    vm.set_console().set_agent();
    vm.launch();
    vm.console_wait("QM-GUEST-READY", "Kernel panic", 60s);
    vm.console_wait("guest# ", "", 30s);
    CHECK(contains(vm.console_exec("echo $((6*7))", "42", "", 10s), "echo $((6*7))"));

    vm.agent_wait_ready(60s);
    CHECK(contains(vm.agent_command("guest-info"), "\"guest-exec\""));
    qm::ExecResult r = vm.agent_exec({"sh", "-c", "cat; echo err >&2; exit 3"},
                                     std::string_view("in\0put", 6), 60s);
    CHECK(r.exit_code == 3);
    CHECK(r.out == std::string("in\0put", 6));
    CHECK(r.err == "err\n");
    CHECK(!r.truncated);
    CHECK(vm.agent_exec({"true"}).out.empty());
    const std::string bytes("\0\xff\n binary \0", 13);
    vm.agent_write_file("/tmp/cpp", bytes, 60s);
    CHECK(vm.agent_read_file("/tmp/cpp", 60s) == bytes);
    vm.agent_write_file("/tmp/empty", "");
    CHECK(vm.agent_read_file("/tmp/empty").empty());
    qm::Error e = expect_error(QM_ERR_COMMAND, [&] { vm.agent_read_file("/no/such/file"); });
    CHECK(e.qmp_class() == "GenericError");
    vm.console_write("poweroff -f\r");
    vm.wait(60s);
    CHECK(vm.exit_code() == 0);
    CHECK(contains(vm.event_wait("SHUTDOWN", R"({"data": {"guest": true}})", 0ms), "guest-shutdown"));
}

int main() {
    CHECK(qm::version() == QM_VERSION_STRING);
    lifecycle_and_qmp();
    launch_failure();
    moves_transfer_ownership();
    threads_share_a_machine();
    listeners_and_split_commands();
    qtest_session();
    probes_and_migration();
    console_and_agent();
    std::printf("cpp_wrapper: ok\n");
    return 0;
}
