/*
 * qemu-machine for C++17: a header-only RAII layer over qemu_machine.h.
 *
 *   qm::Machine vm("qemu-system-x86_64");
 *   vm.set_machine_type("none").add_args({"-accel", "tcg"});
 *   vm.launch();
 *   std::string status = vm.command("query-status");          // JSON text
 *   vm.shutdown(std::chrono::seconds(10));
 *
 * - qm::Machine owns a qm_machine (move-only); its destructor frees it,
 *   which kills and reaps a QEMU still running.
 * - Every failure throws qm::Error, carrying the qm_status and, for QMP
 *   command errors (QM_ERR_COMMAND), the QMP error class and description.
 * - JSON goes in and out as std::string text; an empty string stands for
 *   "none" where the C API takes NULL (arguments, match, failure pattern).
 * - Timeouts are std::chrono durations; qm::forever waits forever.
 * - Bytes that may hold NULs (agent files, program output, guest memory)
 *   travel as std::string (or std::vector<std::uint8_t> for guest memory).
 * - Calls that poll (Listener::next, Machine::receive) return
 *   std::optional: empty when nothing came in time.
 * - Thread safety is that of the C API: all calls on one machine may come
 *   from several threads at once, except destruction, which must be last.
 *
 *   qm::Listener events(vm, R"([["STOP", null]])");   // its own queue
 *   std::uint64_t ticket = vm.send("stop");            // in flight...
 *   std::optional<std::string> reply = vm.receive(ticket, 0ms);  // ...polled
 */
#ifndef QEMU_MACHINE_HPP
#define QEMU_MACHINE_HPP

#include <qemu_machine.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace qm {

/** Frees a string returned by the library. */
struct StringDeleter {
    void operator()(char *s) const noexcept { qm_string_free(s); }
};
/** A string owned by the library's allocator. */
using UniqueString = std::unique_ptr<char, StringDeleter>;

/** Frees an error object. */
struct ErrorDeleter {
    void operator()(qm_error *e) const noexcept { qm_error_free(e); }
};
using UniqueError = std::unique_ptr<qm_error, ErrorDeleter>;

/** Frees a machine (killing a QEMU that still runs). */
struct MachineDeleter {
    void operator()(qm_machine *m) const noexcept { qm_machine_free(m); }
};

/** Frees a listener. */
struct ListenerDeleter {
    void operator()(qm_listener *l) const noexcept { qm_listener_free(l); }
};

/** Frees the result of a program run in the guest. */
struct ExecResultDeleter {
    void operator()(qm_exec_result *r) const noexcept { qm_exec_result_free(r); }
};

/** Wait forever (a timeout). */
inline constexpr std::chrono::milliseconds forever{-1};

/** A failed call. */
class Error : public std::runtime_error {
  public:
    Error(qm_status status, const std::string &message, std::string qmp_class,
          std::string qmp_desc)
        : std::runtime_error(message), status_(status), qmp_class_(std::move(qmp_class)),
          qmp_desc_(std::move(qmp_desc)) {}

    /** The status code (never QM_OK). */
    qm_status status() const noexcept { return status_; }
    /** The QMP error class ("CommandNotFound", ...); empty unless QM_ERR_COMMAND. */
    const std::string &qmp_class() const noexcept { return qmp_class_; }
    /** QEMU's description of a QMP error; empty unless QM_ERR_COMMAND. */
    const std::string &qmp_desc() const noexcept { return qmp_desc_; }

  private:
    qm_status status_;
    std::string qmp_class_;
    std::string qmp_desc_;
};

namespace detail {

inline std::string text_or_empty(const char *s) { return s != nullptr ? std::string(s) : std::string(); }

/** Throw qm::Error for a failed status; frees the error object either way.
 *  Call it with the status in a variable: in `check(f(&err), err)` the
 *  argument `err` may be read before `f` has set it. */
inline void check(qm_status status, qm_error *raw) {
    UniqueError err(raw);
    if (status == QM_OK) {
        return;
    }
    std::string message = err ? text_or_empty(qm_error_message(err.get()))
                              : text_or_empty(qm_status_str(static_cast<int>(status)));
    throw Error(status, message, text_or_empty(qm_error_qmp_class(err.get())),
                text_or_empty(qm_error_qmp_desc(err.get())));
}

/** Take ownership of a returned string and copy it. */
inline std::string take(char *s) {
    UniqueString owned(s);
    return text_or_empty(owned.get());
}

/** NULL for an empty string ("none"), else its characters. */
inline const char *or_null(const std::string &s) { return s.empty() ? nullptr : s.c_str(); }

inline std::int64_t ms(std::chrono::milliseconds t) { return static_cast<std::int64_t>(t.count()); }

/** Take ownership of returned bytes and copy them. */
inline std::string take_bytes(qm_bytes &b) {
    std::string bytes(reinterpret_cast<const char *>(b.data), b.len);
    qm_bytes_free(&b);
    return bytes;
}

/** A pointer to the bytes of `s` as the C API takes them. */
inline const std::uint8_t *data_of(std::string_view s) {
    return reinterpret_cast<const std::uint8_t *>(s.data());
}

} // namespace detail

/** How a program run in the guest (Machine::agent_exec) ended. The member
 *  names avoid `stdout` and `stderr`, which may be macros. */
struct ExecResult {
    /** Exit status (>= 0), or minus the signal that ended the program. */
    int exit_code = 0;
    /** Its standard output and standard error, as bytes. */
    std::string out;
    std::string err;
    /** Whether the agent cut the output (it keeps at most 16 MiB each). */
    bool truncated = false;
};

/** A QEMU virtual machine. */
class Machine {
  public:
    /** A machine that will run `binary` (checked at launch). */
    explicit Machine(const std::string &binary) {
        qm_machine *raw = nullptr;
        qm_error *err = nullptr;
        const qm_status status = qm_machine_new(binary.c_str(), &raw, &err);
        detail::check(status, err);
        m_.reset(raw);
    }

    /** Attach to a QEMU started elsewhere, QMP on a Unix socket. */
    static Machine attach_unix(const std::string &path,
                               std::chrono::milliseconds timeout = std::chrono::seconds(30)) {
        qm_machine *raw = nullptr;
        qm_error *err = nullptr;
        const qm_status status = qm_attach_unix(path.c_str(), detail::ms(timeout), &raw, &err);
        detail::check(status, err);
        return Machine(raw);
    }

    /** Attach to a QEMU started elsewhere, QMP on TCP. */
    static Machine attach_tcp(const std::string &host, std::uint16_t port,
                              std::chrono::milliseconds timeout = std::chrono::seconds(30)) {
        qm_machine *raw = nullptr;
        qm_error *err = nullptr;
        const qm_status status = qm_attach_tcp(host.c_str(), port, detail::ms(timeout), &raw, &err);
        detail::check(status, err);
        return Machine(raw);
    }

    Machine(Machine &&) noexcept = default;
    Machine &operator=(Machine &&) noexcept = default;
    Machine(const Machine &) = delete;
    Machine &operator=(const Machine &) = delete;
    ~Machine() = default;

    /** The C handle, for calls this layer does not wrap. Still owned here. */
    qm_machine *get() const noexcept { return m_.get(); }

    // Configuration (before launch; QM_ERR_STATE while running).

    Machine &add_arg(const std::string &arg) { return call(qm_add_arg, arg.c_str()); }
    Machine &add_args(std::initializer_list<std::string> args) {
        for (const auto &a : args) {
            add_arg(a);
        }
        return *this;
    }
    Machine &add_wrapper_arg(const std::string &arg) {
        return call(qm_add_wrapper_arg, arg.c_str());
    }
    Machine &set_name(const std::string &name) { return call(qm_set_name, name.c_str()); }
    Machine &set_base_temp_dir(const std::string &dir) {
        return call(qm_set_base_temp_dir, dir.c_str());
    }
    Machine &set_log_dir(const std::string &dir) { return call(qm_set_log_dir, dir.c_str()); }
    Machine &set_machine_type(const std::string &type) {
        return call(qm_set_machine_type, type.c_str());
    }
    Machine &set_qmp_enabled(bool enabled) { return call(qm_set_qmp_enabled, enabled); }
    Machine &set_monitor_unix(const std::string &path) {
        return call(qm_set_monitor_unix, path.c_str());
    }
    Machine &set_monitor_tcp(const std::string &host, std::uint16_t port) {
        return call(qm_set_monitor_tcp, host.c_str(), port);
    }
    Machine &set_launch_timeout(std::chrono::milliseconds timeout) {
        return call(qm_set_launch_timeout, detail::ms(timeout));
    }
    Machine &add_monitor_null() { return call(qm_add_monitor_null); }
    Machine &add_fd(int fd, int fdset, const std::string &opaque, const std::string &opts = "") {
        return call(qm_add_fd, fd, fdset, opaque.c_str(), detail::or_null(opts));
    }
    /** `device_type` empty: the machine's default serial device. */
    Machine &set_console(const std::string &device_type = "", unsigned console_index = 0) {
        return call(qm_set_console, detail::or_null(device_type), console_index);
    }
    Machine &set_console_log(const std::string &path) {
        return call(qm_set_console_log, path.c_str());
    }
    Machine &set_qmp_trace(const std::string &path) {
        return call(qm_set_qmp_trace, path.c_str());
    }
    /** An environment variable for QEMU only. */
    Machine &set_env(const std::string &name, const std::string &value) {
        return call(qm_set_env, name.c_str(), value.c_str());
    }
    /** Remove `name` from QEMU's environment. */
    Machine &unset_env(const std::string &name) {
        return call(qm_set_env, name.c_str(), static_cast<const char *>(nullptr));
    }
    /** A guest agent channel: `device_type` empty is a virtio-serial port,
     *  else e.g. "isa-serial". */
    Machine &set_agent(const std::string &device_type = "") {
        return call(qm_set_agent, detail::or_null(device_type));
    }
    /** Run under qtest (-accel qtest unless the arguments choose one). */
    Machine &set_qtest() { return call(qm_set_qtest); }
    /** The bound of every qtest call (default 30 s). */
    Machine &set_qtest_timeout(std::chrono::milliseconds timeout) {
        return call(qm_set_qtest_timeout, detail::ms(timeout));
    }

    // Lifecycle.

    void launch() { call(qm_launch); }
    void shutdown(std::chrono::milliseconds timeout = std::chrono::seconds(30)) {
        call(qm_shutdown, detail::ms(timeout));
    }
    void kill() { call(qm_kill); }
    void wait(std::chrono::milliseconds timeout = forever) { call(qm_wait, detail::ms(timeout)); }
    bool is_running() const noexcept { return qm_is_running(m_.get()); }
    /** QEMU's pid, -1 when not running. */
    int pid() const noexcept { return qm_pid(m_.get()); }
    /** Exit status (>= 0) or minus the signal; throws QM_ERR_STATE while running. */
    int exit_code() const {
        int code = 0;
        qm_error *err = nullptr;
        const qm_status status = qm_exit_code(m_.get(), &code, &err);
        detail::check(status, err);
        return code;
    }
    std::string log() const { return get_string(qm_log); }
    std::string temp_dir() const { return get_string(qm_temp_dir); }
    /** The full command line, as a JSON array. */
    std::string command_line() const { return get_string(qm_command_line); }
    std::uint16_t monitor_port() const {
        std::uint16_t port = 0;
        qm_error *err = nullptr;
        const qm_status status = qm_monitor_port(m_.get(), &port, &err);
        detail::check(status, err);
        return port;
    }

    // QMP. JSON text in and out; empty `args_json` means no arguments.

    /** QEMU's whole reply: {"return": ...} or {"error": ...}. */
    std::string qmp(const std::string &cmd, const std::string &args_json = "",
                    std::chrono::milliseconds timeout = std::chrono::seconds(30)) {
        return out(qm_qmp_cmd, cmd.c_str(), detail::or_null(args_json), detail::ms(timeout));
    }
    /** The "return" value; a QMP error throws qm::Error with its class. */
    std::string command(const std::string &cmd, const std::string &args_json = "",
                        std::chrono::milliseconds timeout = std::chrono::seconds(30)) {
        return out(qm_command, cmd.c_str(), detail::or_null(args_json), detail::ms(timeout));
    }
    /** The first event named `name` ("" = any) matching `match_json` ("" = any). */
    std::string event_wait(const std::string &name, const std::string &match_json = "",
                           std::chrono::milliseconds timeout = std::chrono::seconds(30)) {
        return out(qm_event_wait, detail::or_null(name), detail::or_null(match_json),
                   detail::ms(timeout));
    }
    /** `filters_json`: [["NAME", match-or-null], ...]. */
    std::string events_wait(const std::string &filters_json,
                            std::chrono::milliseconds timeout = std::chrono::seconds(30)) {
        return out(qm_events_wait, filters_json.c_str(), detail::ms(timeout));
    }
    std::string event_get(std::chrono::milliseconds timeout = std::chrono::seconds(30)) {
        return out(qm_event_get, detail::ms(timeout));
    }
    /** Every queued event, as a JSON array. */
    std::string events_take() { return out(qm_events_take); }
    void send_fd(int fd, const std::string &name) { call(qm_send_fd, fd, name.c_str()); }
    /** QEMU's QMP greeting, {"QMP": {...}}, of the current or last run. */
    std::string qmp_greeting() const { return get_string(qm_qmp_greeting); }

    // Split commands and event loops: never blocking.

    /** Send a command now; collect its reply with receive(ticket). */
    std::uint64_t send(const std::string &cmd, const std::string &args_json = "") {
        std::uint64_t ticket = 0;
        call(qm_command_send, cmd.c_str(), detail::or_null(args_json), &ticket);
        return ticket;
    }
    /** The whole reply to `ticket` ({"return": ...} or {"error": ...});
     *  empty if it did not come within `timeout` (0ms polls), the ticket
     *  then still valid. */
    std::optional<std::string> receive(std::uint64_t ticket,
                                       std::chrono::milliseconds timeout = std::chrono::seconds(30)) {
        char *reply = nullptr;
        qm_error *err = nullptr;
        const qm_status status =
            qm_command_receive(m_.get(), ticket, detail::ms(timeout), &reply, &err);
        if (status == QM_ERR_TIMEOUT) {
            qm_error_free(err);
            return std::nullopt;
        }
        detail::check(status, err);
        return detail::take(reply);
    }
    /** Readable when QMP input waits to be routed (call dispatch()), or the
     *  run has ended; -1 when not running. Owned by the machine. */
    int fd() const noexcept { return qm_machine_fd(m_.get()); }
    /** Route what has arrived; never blocks. */
    void dispatch() { call(qm_dispatch); }

    // Guest agent (after set_agent).

    void agent_wait_ready(std::chrono::milliseconds timeout = std::chrono::seconds(60)) {
        call(qm_agent_wait_ready, detail::ms(timeout));
    }
    /** The agent command's "return" value as JSON; its error throws. */
    std::string agent_command(const std::string &cmd, const std::string &args_json = "",
                              std::chrono::milliseconds timeout = std::chrono::seconds(30)) {
        return out(qm_agent_cmd, cmd.c_str(), detail::or_null(args_json), detail::ms(timeout));
    }
    /** Run `argv` in the guest, `input` on its standard input. */
    ExecResult agent_exec(const std::vector<std::string> &argv, std::string_view input = {},
                          std::chrono::milliseconds timeout = std::chrono::seconds(30)) {
        std::vector<const char *> c_argv;
        for (const auto &a : argv) {
            c_argv.push_back(a.c_str());
        }
        c_argv.push_back(nullptr);
        qm_exec_result *raw = nullptr;
        call(qm_agent_exec, static_cast<const char *const *>(c_argv.data()),
             input.empty() ? nullptr : detail::data_of(input), input.size(), detail::ms(timeout),
             &raw);
        std::unique_ptr<qm_exec_result, ExecResultDeleter> result(raw);
        ExecResult r;
        std::size_t len = 0;
        r.exit_code = qm_exec_result_exit_code(result.get());
        const std::uint8_t *bytes = qm_exec_result_stdout(result.get(), &len);
        r.out.assign(reinterpret_cast<const char *>(bytes), len);
        bytes = qm_exec_result_stderr(result.get(), &len);
        r.err.assign(reinterpret_cast<const char *>(bytes), len);
        r.truncated = qm_exec_result_truncated(result.get());
        return r;
    }
    /** The whole guest file, as bytes. */
    std::string agent_read_file(const std::string &guest_path,
                                std::chrono::milliseconds timeout = std::chrono::seconds(30)) {
        qm_bytes bytes{nullptr, 0};
        call(qm_agent_file_read, guest_path.c_str(), detail::ms(timeout), &bytes);
        return detail::take_bytes(bytes);
    }
    /** Create or replace the guest file with `data`. */
    void agent_write_file(const std::string &guest_path, std::string_view data,
                          std::chrono::milliseconds timeout = std::chrono::seconds(30)) {
        call(qm_agent_file_write, guest_path.c_str(),
             data.empty() ? nullptr : detail::data_of(data), data.size(), detail::ms(timeout));
    }

    // qtest (after set_qtest), with libqtest's names. Sizes in the names:
    // b 1 byte, w 2, l 4, q 8; guest byte order.

    std::uint8_t readb(std::uint64_t addr) { return static_cast<std::uint8_t>(read(addr, 1)); }
    std::uint16_t readw(std::uint64_t addr) { return static_cast<std::uint16_t>(read(addr, 2)); }
    std::uint32_t readl(std::uint64_t addr) { return static_cast<std::uint32_t>(read(addr, 4)); }
    std::uint64_t readq(std::uint64_t addr) { return read(addr, 8); }
    void writeb(std::uint64_t addr, std::uint8_t v) { call(qm_qtest_write, addr, 1u, std::uint64_t{v}); }
    void writew(std::uint64_t addr, std::uint16_t v) { call(qm_qtest_write, addr, 2u, std::uint64_t{v}); }
    void writel(std::uint64_t addr, std::uint32_t v) { call(qm_qtest_write, addr, 4u, std::uint64_t{v}); }
    void writeq(std::uint64_t addr, std::uint64_t v) { call(qm_qtest_write, addr, 8u, v); }
    std::uint8_t inb(std::uint16_t port) { return static_cast<std::uint8_t>(in(port, 1)); }
    std::uint16_t inw(std::uint16_t port) { return static_cast<std::uint16_t>(in(port, 2)); }
    std::uint32_t inl(std::uint16_t port) { return in(port, 4); }
    void outb(std::uint16_t port, std::uint8_t v) { call(qm_qtest_out, port, 1u, std::uint32_t{v}); }
    void outw(std::uint16_t port, std::uint16_t v) { call(qm_qtest_out, port, 2u, std::uint32_t{v}); }
    void outl(std::uint16_t port, std::uint32_t v) { call(qm_qtest_out, port, 4u, v); }
    /** Read `len` bytes of guest memory into `buf`. */
    void memread(std::uint64_t addr, void *buf, std::size_t len) {
        call(qm_qtest_memread, addr, static_cast<std::uint8_t *>(buf), len);
    }
    std::vector<std::uint8_t> memread(std::uint64_t addr, std::size_t len) {
        std::vector<std::uint8_t> bytes(len);
        memread(addr, bytes.data(), len);
        return bytes;
    }
    void memwrite(std::uint64_t addr, const void *data, std::size_t len) {
        call(qm_qtest_memwrite, addr, static_cast<const std::uint8_t *>(data), len);
    }
    void memwrite(std::uint64_t addr, const std::vector<std::uint8_t> &data) {
        memwrite(addr, data.data(), data.size());
    }
    void memset(std::uint64_t addr, std::uint8_t byte, std::size_t len) {
        call(qm_qtest_memset, addr, byte, len);
    }
    /** Advance the virtual clock by `ns`; the new virtual time. */
    std::int64_t clock_step(std::int64_t ns) { return clock(qm_qtest_clock_step, ns); }
    /** Advance the virtual clock to the next timer deadline. */
    std::int64_t clock_step_next() { return clock(qm_qtest_clock_step, -1); }
    /** Move the virtual clock to `ns` (never back); the new virtual time. */
    std::int64_t clock_set(std::int64_t ns) { return clock(qm_qtest_clock_set, ns); }
    void irq_intercept_in(const std::string &qom_path) {
        call(qm_qtest_irq_intercept_in, qom_path.c_str());
    }
    void irq_intercept_out(const std::string &qom_path) {
        call(qm_qtest_irq_intercept_out, qom_path.c_str());
    }
    bool get_irq(int line) {
        bool raised = false;
        call(qm_qtest_get_irq, line, &raised);
        return raised;
    }
    void set_irq_in(const std::string &qom_path, const std::string &name, int line, int level) {
        call(qm_qtest_set_irq_in, qom_path.c_str(), name.c_str(), line, level);
    }
    /** One protocol line; QEMU's "OK ..." reply. */
    std::string qtest_raw(const std::string &line) { return out(qm_qtest_raw, line.c_str()); }

    /** Write the run's artifacts (logs, events, command line, status) into
     *  `dir`, e.g. when a test fails. */
    void save_artifacts(const std::string &dir) const {
        qm_error *err = nullptr;
        const qm_status status = qm_save_artifacts(m_.get(), dir.c_str(), &err);
        detail::check(status, err);
    }

    // Serial console (after set_console).

    std::string console_wait(const std::string &success, const std::string &failure = "",
                             std::chrono::milliseconds timeout = std::chrono::seconds(30)) {
        return out(qm_console_wait, success.c_str(), detail::or_null(failure),
                   detail::ms(timeout));
    }
    std::string console_exec(const std::string &command, const std::string &success,
                             const std::string &failure = "",
                             std::chrono::milliseconds timeout = std::chrono::seconds(30)) {
        return out(qm_console_exec, command.c_str(), success.c_str(), detail::or_null(failure),
                   detail::ms(timeout));
    }
    void console_write(std::string_view data) { call(qm_console_write, data.data(), data.size()); }
    std::string console_read() { return out(qm_console_read); }

  private:
    explicit Machine(qm_machine *raw) : m_(raw) {}

    std::uint64_t read(std::uint64_t addr, unsigned size) {
        std::uint64_t value = 0;
        call(qm_qtest_read, addr, size, &value);
        return value;
    }
    std::uint32_t in(std::uint16_t port, unsigned size) {
        std::uint32_t value = 0;
        call(qm_qtest_in, port, size, &value);
        return value;
    }
    template <typename Fn> std::int64_t clock(Fn fn, std::int64_t ns) {
        std::int64_t now = 0;
        call(fn, ns, &now);
        return now;
    }

    /** Call `fn(m, args..., &err)`, throwing on failure. */
    template <typename Fn, typename... Args> Machine &call(Fn fn, Args... args) {
        qm_error *err = nullptr;
        const qm_status status = fn(m_.get(), args..., &err);
        detail::check(status, err);
        return *this;
    }

    /** Call `fn(m, args..., &result, &err)` and take the result string. */
    template <typename Fn, typename... Args> std::string out(Fn fn, Args... args) {
        char *result = nullptr;
        qm_error *err = nullptr;
        const qm_status status = fn(m_.get(), args..., &result, &err);
        detail::check(status, err);
        return detail::take(result);
    }

    template <typename Fn> std::string get_string(Fn fn) const {
        char *result = nullptr;
        qm_error *err = nullptr;
        const qm_status status = fn(m_.get(), &result, &err);
        detail::check(status, err);
        return detail::take(result);
    }

    std::unique_ptr<qm_machine, MachineDeleter> m_;
};

/** A listener: its own queue of the machine's events that pass its
 *  filters, from its creation on, across launches. Move-only; it may
 *  outlive its machine (it then gives what it holds, then throws
 *  QM_ERR_DISCONNECTED). */
class Listener {
  public:
    /** `filters_json`: [["NAME", match-or-null], ...]; empty: every event. */
    explicit Listener(Machine &machine, const std::string &filters_json = "") {
        qm_listener *raw = nullptr;
        qm_error *err = nullptr;
        const qm_status status =
            qm_listener_new(machine.get(), detail::or_null(filters_json), &raw, &err);
        detail::check(status, err);
        l_.reset(raw);
    }

    /** The oldest event; empty if none came within `timeout` (0ms polls). */
    std::optional<std::string> next(std::chrono::milliseconds timeout = std::chrono::seconds(30)) {
        char *event = nullptr;
        qm_error *err = nullptr;
        const qm_status status = qm_listener_wait(l_.get(), detail::ms(timeout), &event, &err);
        if (status == QM_ERR_TIMEOUT) {
            qm_error_free(err);
            return std::nullopt;
        }
        detail::check(status, err);
        return detail::take(event);
    }
    /** Every queued event, as a JSON array (possibly "[]"); never waits. */
    std::string take() {
        char *events = nullptr;
        qm_error *err = nullptr;
        const qm_status status = qm_listener_take(l_.get(), &events, &err);
        detail::check(status, err);
        return detail::take(events);
    }
    /** Readable exactly while events are queued; owned by the listener. */
    int fd() const noexcept { return qm_listener_fd(l_.get()); }
    /** Events dropped because the queue was full (65536). */
    std::uint64_t dropped() const {
        std::uint64_t count = 0;
        qm_error *err = nullptr;
        const qm_status status = qm_listener_dropped(l_.get(), &count, &err);
        detail::check(status, err);
        return count;
    }
    /** The C handle, still owned here. */
    qm_listener *get() const noexcept { return l_.get(); }

  private:
    std::unique_ptr<qm_listener, ListenerDeleter> l_;
};

/** Whether `binary` has `name` of kind `what` ("machine", "device",
 *  "accel", "cpu", "command"); answered once per binary, then cached. */
inline bool probe(const std::string &binary, const std::string &what, const std::string &name,
                  std::chrono::milliseconds timeout = std::chrono::seconds(30)) {
    bool present = false;
    qm_error *err = nullptr;
    const qm_status status = qm_probe(binary.c_str(), what.c_str(), name.c_str(),
                                      detail::ms(timeout), &present, &err);
    detail::check(status, err);
    return present;
}

/** Live-migrate `src` into `dst` (launched with -incoming defer). */
inline void migrate(Machine &src, Machine &dst,
                    std::chrono::milliseconds timeout = std::chrono::seconds(60)) {
    qm_error *err = nullptr;
    const qm_status status = qm_migrate(src.get(), dst.get(), detail::ms(timeout), &err);
    detail::check(status, err);
}

/** Whether `event_json` matches `match_json` (qm_event_match). */
inline bool event_match(const std::string &event_json, const std::string &match_json) {
    bool matches = false;
    qm_error *err = nullptr;
    const qm_status status = qm_event_match(event_json.c_str(), match_json.c_str(), &matches, &err);
    detail::check(status, err);
    return matches;
}

/** The library's version ("MAJOR.MINOR.PATCH"). */
inline std::string version() { return qm_version(); }

} // namespace qm

#endif /* QEMU_MACHINE_HPP */
