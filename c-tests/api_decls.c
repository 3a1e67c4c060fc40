/* Every function of the C API contract (API.md) is declared by the header
 * with exactly the contract's signature: each is assigned to a pointer of
 * the contract's type, which -Werror turns into a compile error on any
 * mismatch. Run as a program, it checks the pointers are all set. */
#include <qemu_machine.h>

#include <stdio.h>

#define DECL(ret, name, params) ret(*const p_##name) params = name;

DECL(const char *, qm_version, (void))
DECL(const char *, qm_status_str, (int status))
DECL(qm_status, qm_error_status, (const qm_error *err))
DECL(const char *, qm_error_message, (const qm_error *err))
DECL(const char *, qm_error_qmp_class, (const qm_error *err))
DECL(void, qm_error_free, (qm_error *err))
DECL(void, qm_string_free, (char *s))
DECL(qm_status, qm_machine_new, (const char *binary, qm_machine **out, qm_error **err))
DECL(void, qm_machine_free, (qm_machine *m))
DECL(qm_status, qm_add_arg, (qm_machine *m, const char *arg, qm_error **err))
DECL(qm_status, qm_add_wrapper_arg, (qm_machine *m, const char *arg, qm_error **err))
DECL(qm_status, qm_set_name, (qm_machine *m, const char *name, qm_error **err))
DECL(qm_status, qm_set_base_temp_dir, (qm_machine *m, const char *dir, qm_error **err))
DECL(qm_status, qm_set_log_dir, (qm_machine *m, const char *dir, qm_error **err))
DECL(qm_status, qm_set_machine_type, (qm_machine *m, const char *machine_type, qm_error **err))
DECL(qm_status, qm_set_qmp_enabled, (qm_machine *m, bool enabled, qm_error **err))
DECL(qm_status, qm_set_launch_timeout, (qm_machine *m, int64_t timeout_ms, qm_error **err))
DECL(qm_status, qm_add_monitor_null, (qm_machine *m, qm_error **err))
DECL(qm_status, qm_launch, (qm_machine *m, qm_error **err))
DECL(qm_status, qm_shutdown, (qm_machine *m, int64_t timeout_ms, qm_error **err))
DECL(qm_status, qm_kill, (qm_machine *m, qm_error **err))
DECL(qm_status, qm_wait, (qm_machine *m, int64_t timeout_ms, qm_error **err))
DECL(bool, qm_is_running, (const qm_machine *m))
DECL(int, qm_pid, (const qm_machine *m))
DECL(qm_status, qm_exit_code, (const qm_machine *m, int *exit_code, qm_error **err))
DECL(qm_status, qm_log, (const qm_machine *m, char **log, qm_error **err))
DECL(qm_status, qm_qmp_cmd,
     (qm_machine *m, const char *cmd, const char *args_json, int64_t timeout_ms,
      char **response_json, qm_error **err))
DECL(qm_status, qm_command,
     (qm_machine *m, const char *cmd, const char *args_json, int64_t timeout_ms,
      char **return_json, qm_error **err))
DECL(qm_status, qm_event_wait,
     (qm_machine *m, const char *name, const char *match_json, int64_t timeout_ms,
      char **event_json, qm_error **err))
DECL(qm_status, qm_events_wait,
     (qm_machine *m, const char *filters_json, int64_t timeout_ms, char **event_json,
      qm_error **err))
DECL(qm_status, qm_event_get, (qm_machine *m, int64_t timeout_ms, char **event_json, qm_error **err))
DECL(qm_status, qm_events_take, (qm_machine *m, char **events_json_array, qm_error **err))
DECL(qm_status, qm_set_console,
     (qm_machine *m, const char *device_type, unsigned console_index, qm_error **err))
DECL(qm_status, qm_set_console_log, (qm_machine *m, const char *path, qm_error **err))
DECL(qm_status, qm_console_wait,
     (qm_machine *m, const char *success, const char *failure, int64_t timeout_ms, char **output,
      qm_error **err))
DECL(qm_status, qm_console_write, (qm_machine *m, const char *data, size_t len, qm_error **err))
DECL(qm_status, qm_console_exec,
     (qm_machine *m, const char *command, const char *success, const char *failure,
      int64_t timeout_ms, char **output, qm_error **err))
DECL(qm_status, qm_console_read, (qm_machine *m, char **output, qm_error **err))
DECL(qm_status, qm_set_monitor_unix, (qm_machine *m, const char *path, qm_error **err))
DECL(qm_status, qm_set_monitor_tcp, (qm_machine *m, const char *host, uint16_t port, qm_error **err))
DECL(qm_status, qm_add_fd,
     (qm_machine *m, int fd, int fdset, const char *opaque, const char *opts, qm_error **err))
DECL(qm_status, qm_send_fd, (qm_machine *m, int fd, const char *fdname, qm_error **err))

/* Version 0.2. */
DECL(void, qm_bytes_free, (qm_bytes * b))
DECL(qm_status, qm_console_read_bytes, (qm_machine *m, qm_bytes *out, qm_error **err))
DECL(qm_status, qm_listener_new,
     (qm_machine *m, const char *filters_json, qm_listener **listener, qm_error **err))
DECL(qm_status, qm_listener_wait,
     (qm_listener *l, int64_t timeout_ms, char **event_json, qm_error **err))
DECL(qm_status, qm_listener_take, (qm_listener *l, char **events_json, qm_error **err))
DECL(int, qm_listener_fd, (const qm_listener *l))
DECL(qm_status, qm_listener_dropped, (const qm_listener *l, uint64_t *count, qm_error **err))
DECL(void, qm_listener_free, (qm_listener *l))
DECL(int, qm_machine_fd, (const qm_machine *m))
DECL(qm_status, qm_dispatch, (qm_machine *m, qm_error **err))
DECL(qm_status, qm_command_send,
     (qm_machine *m, const char *cmd, const char *args_json, uint64_t *ticket, qm_error **err))
DECL(qm_status, qm_command_receive,
     (qm_machine *m, uint64_t ticket, int64_t timeout_ms, char **response_json, qm_error **err))
DECL(qm_status, qm_qmp_greeting, (const qm_machine *m, char **greeting_json, qm_error **err))
DECL(qm_status, qm_set_env, (qm_machine *m, const char *name, const char *value, qm_error **err))
DECL(qm_status, qm_set_agent, (qm_machine *m, const char *device_type, qm_error **err))
DECL(qm_status, qm_agent_wait_ready, (qm_machine *m, int64_t timeout_ms, qm_error **err))
DECL(qm_status, qm_agent_cmd,
     (qm_machine *m, const char *cmd, const char *args_json, int64_t timeout_ms,
      char **return_json, qm_error **err))
DECL(qm_status, qm_agent_exec,
     (qm_machine *m, const char *const *argv, const uint8_t *input, size_t input_len,
      int64_t timeout_ms, qm_exec_result **result, qm_error **err))
DECL(int, qm_exec_result_exit_code, (const qm_exec_result *r))
DECL(const uint8_t *, qm_exec_result_stdout, (const qm_exec_result *r, size_t *len))
DECL(const uint8_t *, qm_exec_result_stderr, (const qm_exec_result *r, size_t *len))
DECL(bool, qm_exec_result_truncated, (const qm_exec_result *r))
DECL(void, qm_exec_result_free, (qm_exec_result * r))
DECL(qm_status, qm_agent_file_read,
     (qm_machine *m, const char *guest_path, int64_t timeout_ms, qm_bytes *data, qm_error **err))
DECL(qm_status, qm_agent_file_write,
     (qm_machine *m, const char *guest_path, const uint8_t *data, size_t len, int64_t timeout_ms,
      qm_error **err))
DECL(qm_status, qm_set_qtest, (qm_machine *m, qm_error **err))
DECL(qm_status, qm_set_qtest_timeout, (qm_machine *m, int64_t timeout_ms, qm_error **err))
DECL(qm_status, qm_qtest_raw, (qm_machine *m, const char *line, char **reply, qm_error **err))
DECL(qm_status, qm_qtest_read,
     (qm_machine *m, uint64_t addr, unsigned int size, uint64_t *value, qm_error **err))
DECL(qm_status, qm_qtest_write,
     (qm_machine *m, uint64_t addr, unsigned int size, uint64_t value, qm_error **err))
DECL(qm_status, qm_qtest_in,
     (qm_machine *m, uint16_t port, unsigned int size, uint32_t *value, qm_error **err))
DECL(qm_status, qm_qtest_out,
     (qm_machine *m, uint16_t port, unsigned int size, uint32_t value, qm_error **err))
DECL(qm_status, qm_qtest_memread,
     (qm_machine *m, uint64_t addr, uint8_t *buf, size_t len, qm_error **err))
DECL(qm_status, qm_qtest_memwrite,
     (qm_machine *m, uint64_t addr, const uint8_t *buf, size_t len, qm_error **err))
DECL(qm_status, qm_qtest_memset,
     (qm_machine *m, uint64_t addr, uint8_t byte, size_t len, qm_error **err))
DECL(qm_status, qm_qtest_clock_step, (qm_machine *m, int64_t ns, int64_t *now_ns, qm_error **err))
DECL(qm_status, qm_qtest_clock_set, (qm_machine *m, int64_t ns, int64_t *now_ns, qm_error **err))
DECL(qm_status, qm_qtest_irq_intercept_in, (qm_machine *m, const char *qom_path, qm_error **err))
DECL(qm_status, qm_qtest_irq_intercept_out, (qm_machine *m, const char *qom_path, qm_error **err))
DECL(qm_status, qm_qtest_get_irq, (qm_machine *m, int line, bool *raised, qm_error **err))
DECL(qm_status, qm_qtest_set_irq_in,
     (qm_machine *m, const char *qom_path, const char *name, int line, int level, qm_error **err))
DECL(qm_status, qm_save_artifacts, (const qm_machine *m, const char *dir, qm_error **err))
DECL(qm_status, qm_probe,
     (const char *binary, const char *what, const char *name, int64_t timeout_ms, bool *present,
      qm_error **err))
DECL(qm_status, qm_migrate, (qm_machine *src, qm_machine *dst, int64_t timeout_ms, qm_error **err))

/* The contract's enum, with its tag, and its values. */
typedef char tag_check[sizeof(enum qm_status) == sizeof(qm_status) ? 1 : -1];
/* qm_bytes is a plain struct with the contract's members. */
typedef char bytes_check[sizeof(((qm_bytes *)0)->data) == sizeof(uint8_t *) &&
                                 sizeof(((qm_bytes *)0)->len) == sizeof(size_t)
                             ? 1
                             : -1];
typedef char values_check[(QM_OK == 0 && QM_ERR_CONSOLE_FAILURE == 12) ? 1 : -1];

int main(void) {
    if (p_qm_version() == NULL || p_qm_status_str(QM_OK) == NULL) {
        return 1;
    }
    printf("api_decls: ok\n");
    return 0;
}
