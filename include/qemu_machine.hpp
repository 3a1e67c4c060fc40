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
 * - Thread safety is that of the C API: all calls on one machine may come
 *   from several threads at once, except destruction, which must be last.
 */
#ifndef QEMU_MACHINE_HPP
#define QEMU_MACHINE_HPP

#include <qemu_machine.h>

#include <chrono>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>

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

} // namespace detail

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
