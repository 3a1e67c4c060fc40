// The C++17 RAII layer (include/qemu_machine.hpp) against a real QEMU.
#include <qemu_machine.hpp>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#include <sys/wait.h>

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

static void console() {
    const char *dir = std::getenv("QM_TEST_GUEST_DIR");
    CHECK(dir != nullptr);
    qm::Machine vm(qemu());
    vm.add_args({"-accel", "tcg", "-m", "256", "-nodefaults", "-no-reboot", "-kernel",
                 std::string(dir) + "/vmlinux", "-initrd", std::string(dir) + "/initramfs.cpio.gz",
                 "-append", "console=ttyS0 panic=-1"});
    vm.set_console();
    vm.launch();
    vm.console_wait("QM-GUEST-READY", "Kernel panic", 60s);
    vm.console_wait("guest# ", "", 30s);
    CHECK(contains(vm.console_exec("echo $((6*7))", "42", "", 10s), "echo $((6*7))"));
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
    console();
    std::printf("cpp_wrapper: ok\n");
    return 0;
}
