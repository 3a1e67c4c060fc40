/* Bad input for every exported function, table-driven: each pointer
 * argument NULL in turn, invalid UTF-8, invalid JSON, JSON of the wrong
 * type, negative and huge timeouts and values out of range. Every case
 * must return QM_ERR_INVALID_ARGUMENT with a message naming the parameter,
 * leave the outputs untouched, and leave the machine working. The machine
 * runs under qtest and has no guest agent: argument checks come before
 * the configuration's. (qtest's own checks name the value rather than the
 * C parameter: "the QOM path", "read size", "the IRQ line".) Functions
 * without a status are checked below the table. tests/c_api.rs checks that
 * every exported qm_* symbol is named in this file. */
#include "qm_test.h"

#include <limits.h>

static const char U[] = {'a', (char)0xff, 'b', 0}; /* invalid UTF-8 */
static char *const SENTINEL = (char *)"untouched";
#define HUGE_MS INT64_MAX
#define F1 "[[\"A\", null]]" /* a valid filter list */

/* Outputs every case writes to, checked untouched after each. */
static char *out_s;
static qm_machine *out_m;
static qm_listener *out_l;
static qm_bytes out_bytes;
static qm_listener *L; /* a listener for the cases that need a valid one */
static char deep_args[3000]; /* arguments nested deeper than QEMU accepts */
static int out_i;
static uint64_t out_u64;
static uint16_t out_u16;
static bool out_b;
static uint32_t out_u32;
static int64_t out_i64;
static qm_exec_result *out_r;
static uint8_t out_buf[4]; /* qm_qtest_memread's buffer */

/* argv arrays for qm_agent_exec. */
static const char *const ARGV_OK[] = {"true", NULL};
static const char *const ARGV_NONE[] = {NULL};
static const char *const ARGV_BAD[] = {"echo", U, NULL};
static const char *const ARGV_NULL_FIRST[] = {NULL, "true", NULL};
static const char *const ARGV_EMPTY_PROGRAM[] = {"", NULL};
static const uint8_t BYTES[] = {1, 2, 3};

static void reset_outputs(void) {
    out_s = SENTINEL;
    out_m = (qm_machine *)SENTINEL;
    out_l = (qm_listener *)SENTINEL;
    out_bytes.data = (uint8_t *)SENTINEL;
    out_bytes.len = 77;
    out_i = 77;
    out_u64 = 77;
    out_u16 = 77;
    out_b = true;
    out_u32 = 77;
    out_i64 = 77;
    out_r = (qm_exec_result *)SENTINEL;
    memset(out_buf, 0xee, sizeof out_buf);
}

static int outputs_untouched(void) {
    return out_s == SENTINEL && out_m == (qm_machine *)SENTINEL &&
           out_l == (qm_listener *)SENTINEL && out_bytes.data == (uint8_t *)SENTINEL &&
           out_bytes.len == 77 && out_i == 77 && out_u64 == 77 && out_u16 == 77 && out_b &&
           out_u32 == 77 && out_i64 == 77 && out_r == (qm_exec_result *)SENTINEL &&
           out_buf[0] == 0xee && out_buf[1] == 0xee && out_buf[2] == 0xee && out_buf[3] == 0xee;
}

/* X(id, function, expected text in the message, call) */
#define CASES(X)                                                                               \
    X(c1, qm_machine_new, "`binary` is NULL", qm_machine_new(NULL, &out_m, err))               \
    X(c2, qm_machine_new, "`binary` is not valid UTF-8", qm_machine_new(U, &out_m, err))       \
    X(c3, qm_machine_new, "`out` is NULL", qm_machine_new("qemu", NULL, err))                  \
    X(c4, qm_add_arg, "`m` is NULL", qm_add_arg(NULL, "-S", err))                              \
    X(c5, qm_add_arg, "`arg` is NULL", qm_add_arg(m, NULL, err))                               \
    X(c6, qm_add_arg, "`arg` is not valid UTF-8", qm_add_arg(m, U, err))                       \
    X(c7, qm_add_wrapper_arg, "`m` is NULL", qm_add_wrapper_arg(NULL, "env", err))             \
    X(c8, qm_add_wrapper_arg, "`arg` is NULL", qm_add_wrapper_arg(m, NULL, err))               \
    X(c9, qm_add_wrapper_arg, "`arg` is not valid UTF-8", qm_add_wrapper_arg(m, U, err))       \
    X(c10, qm_set_name, "`m` is NULL", qm_set_name(NULL, "n", err))                            \
    X(c11, qm_set_name, "`name` is NULL", qm_set_name(m, NULL, err))                           \
    X(c12, qm_set_name, "`name` is not valid UTF-8", qm_set_name(m, U, err))                   \
    X(c13, qm_set_name, "name must be a plain file name", qm_set_name(m, "a/b", err))    \
    X(c14, qm_set_base_temp_dir, "`m` is NULL", qm_set_base_temp_dir(NULL, "/tmp", err))       \
    X(c15, qm_set_base_temp_dir, "`dir` is NULL", qm_set_base_temp_dir(m, NULL, err))          \
    X(c16, qm_set_base_temp_dir, "`dir` is not valid UTF-8", qm_set_base_temp_dir(m, U, err))  \
    X(c17, qm_set_log_dir, "`m` is NULL", qm_set_log_dir(NULL, "/tmp", err))                   \
    X(c18, qm_set_log_dir, "`dir` is NULL", qm_set_log_dir(m, NULL, err))                      \
    X(c19, qm_set_log_dir, "`dir` is not valid UTF-8", qm_set_log_dir(m, U, err))              \
    X(c20, qm_set_machine_type, "`m` is NULL", qm_set_machine_type(NULL, "none", err))         \
    X(c21, qm_set_machine_type, "`machine_type` is NULL", qm_set_machine_type(m, NULL, err))   \
    X(c22, qm_set_machine_type, "`machine_type` is not valid UTF-8",                           \
      qm_set_machine_type(m, U, err))                                                          \
    X(c23, qm_set_qmp_enabled, "`m` is NULL", qm_set_qmp_enabled(NULL, true, err))             \
    X(c24, qm_set_monitor_unix, "`m` is NULL", qm_set_monitor_unix(NULL, "/tmp/s", err))       \
    X(c25, qm_set_monitor_unix, "`path` is NULL", qm_set_monitor_unix(m, NULL, err))           \
    X(c26, qm_set_monitor_unix, "`path` is not valid UTF-8", qm_set_monitor_unix(m, U, err))   \
    X(c27, qm_set_monitor_unix, "107", qm_set_monitor_unix(m, long_path, err))                 \
    X(c28, qm_set_monitor_tcp, "`m` is NULL", qm_set_monitor_tcp(NULL, "127.0.0.1", 0, err))   \
    X(c29, qm_set_monitor_tcp, "`host` is NULL", qm_set_monitor_tcp(m, NULL, 0, err))          \
    X(c30, qm_set_monitor_tcp, "`host` is not valid UTF-8", qm_set_monitor_tcp(m, U, 0, err))  \
    X(c31, qm_set_monitor_tcp, "non-empty", qm_set_monitor_tcp(m, "", 0, err))                 \
    X(c32, qm_set_launch_timeout, "`m` is NULL", qm_set_launch_timeout(NULL, 1, err))          \
    X(c33, qm_set_launch_timeout, "`timeout_ms`", qm_set_launch_timeout(m, -2, err))           \
    X(c34, qm_set_launch_timeout, "`timeout_ms`", qm_set_launch_timeout(m, HUGE_MS, err))      \
    X(c35, qm_add_monitor_null, "`m` is NULL", qm_add_monitor_null(NULL, err))                 \
    X(c36, qm_add_fd, "`m` is NULL", qm_add_fd(NULL, 0, 1, "o", NULL, err))                    \
    X(c37, qm_add_fd, "`fd` (-1)", qm_add_fd(m, -1, 1, "o", NULL, err))                        \
    X(c38, qm_add_fd, "`fd` (1000000)", qm_add_fd(m, 1000000, 1, "o", NULL, err))              \
    X(c39, qm_add_fd, "`fdset` must not be negative", qm_add_fd(m, 0, -1, "o", NULL, err))     \
    X(c40, qm_add_fd, "`opaque` is NULL", qm_add_fd(m, 0, 1, NULL, NULL, err))                 \
    X(c41, qm_add_fd, "`opaque` is not valid UTF-8", qm_add_fd(m, 0, 1, U, NULL, err))         \
    X(c42, qm_add_fd, "`opts` is not valid UTF-8", qm_add_fd(m, 0, 1, "o", U, err))            \
    X(c43, qm_set_console, "`m` is NULL", qm_set_console(NULL, NULL, 0, err))                  \
    X(c44, qm_set_console, "`device_type` is not valid UTF-8", qm_set_console(m, U, 0, err))   \
    X(c45, qm_set_console, "console index must be at most", qm_set_console(m, NULL, 65, err))\
    X(c46, qm_set_console, "console index must be at most",                                  \
      qm_set_console(m, NULL, UINT_MAX, err))                                                  \
    X(c47, qm_set_console_log, "`m` is NULL", qm_set_console_log(NULL, "/tmp/l", err))         \
    X(c48, qm_set_console_log, "`path` is NULL", qm_set_console_log(m, NULL, err))             \
    X(c49, qm_set_console_log, "`path` is not valid UTF-8", qm_set_console_log(m, U, err))     \
    X(c50, qm_set_qmp_trace, "`m` is NULL", qm_set_qmp_trace(NULL, "/tmp/t", err))             \
    X(c51, qm_set_qmp_trace, "`path` is NULL", qm_set_qmp_trace(m, NULL, err))                 \
    X(c52, qm_set_qmp_trace, "`path` is not valid UTF-8", qm_set_qmp_trace(m, U, err))         \
    X(c53, qm_launch, "`m` is NULL", qm_launch(NULL, err))                                     \
    X(c54, qm_shutdown, "`m` is NULL", qm_shutdown(NULL, 1000, err))                           \
    X(c55, qm_shutdown, "`timeout_ms`", qm_shutdown(m, -2, err))                               \
    X(c56, qm_shutdown, "`timeout_ms`", qm_shutdown(m, HUGE_MS, err))                          \
    X(c57, qm_kill, "`m` is NULL", qm_kill(NULL, err))                                         \
    X(c58, qm_wait, "`m` is NULL", qm_wait(NULL, 0, err))                                      \
    X(c59, qm_wait, "`timeout_ms`", qm_wait(m, INT64_MIN, err))                                \
    X(c60, qm_exit_code, "`m` is NULL", qm_exit_code(NULL, &out_i, err))                       \
    X(c61, qm_log, "`m` is NULL", qm_log(NULL, &out_s, err))                                   \
    X(c62, qm_temp_dir, "`m` is NULL", qm_temp_dir(NULL, &out_s, err))                         \
    X(c63, qm_command_line, "`m` is NULL", qm_command_line(NULL, &out_s, err))                 \
    X(c64, qm_monitor_port, "`m` is NULL", qm_monitor_port(NULL, &out_u16, err))               \
    X(c65, qm_attach_unix, "`path` is NULL", qm_attach_unix(NULL, 1000, &out_m, err))          \
    X(c66, qm_attach_unix, "`path` is not valid UTF-8", qm_attach_unix(U, 1000, &out_m, err))  \
    X(c67, qm_attach_unix, "`timeout_ms`", qm_attach_unix("/tmp/s", -9, &out_m, err))          \
    X(c68, qm_attach_unix, "`out` is NULL", qm_attach_unix("/tmp/s", 1000, NULL, err))         \
    X(c69, qm_attach_tcp, "`host` is NULL", qm_attach_tcp(NULL, 1, 1000, &out_m, err))         \
    X(c70, qm_attach_tcp, "`host` is not valid UTF-8", qm_attach_tcp(U, 1, 1000, &out_m, err)) \
    X(c71, qm_attach_tcp, "`timeout_ms`", qm_attach_tcp("h", 1, HUGE_MS, &out_m, err))         \
    X(c72, qm_attach_tcp, "`out` is NULL", qm_attach_tcp("h", 1, 1000, NULL, err))             \
    X(c73, qm_qmp_cmd, "`m` is NULL", qm_qmp_cmd(NULL, "q", NULL, 1, &out_s, err))             \
    X(c74, qm_qmp_cmd, "`cmd` is NULL", qm_qmp_cmd(m, NULL, NULL, 1, &out_s, err))             \
    X(c75, qm_qmp_cmd, "`cmd` is not valid UTF-8", qm_qmp_cmd(m, U, NULL, 1, &out_s, err))     \
    X(c76, qm_qmp_cmd, "`args_json` is not valid UTF-8", qm_qmp_cmd(m, "q", U, 1, &out_s, err))\
    X(c77, qm_qmp_cmd, "`args_json` is not valid JSON", qm_qmp_cmd(m, "q", "{", 1, &out_s, err))\
    X(c78, qm_qmp_cmd, "`args_json` must be a JSON object, got an array",                      \
      qm_qmp_cmd(m, "q", "[1]", 1, &out_s, err))                                               \
    X(c79, qm_qmp_cmd, "`args_json` must be a JSON object, got null",                          \
      qm_qmp_cmd(m, "q", "null", 1, &out_s, err))                                              \
    X(c80, qm_qmp_cmd, "`timeout_ms`", qm_qmp_cmd(m, "q", NULL, -2, &out_s, err))              \
    X(c81, qm_qmp_cmd, "`timeout_ms`", qm_qmp_cmd(m, "q", NULL, HUGE_MS, &out_s, err))         \
    X(c82, qm_command, "`m` is NULL", qm_command(NULL, "q", NULL, 1, &out_s, err))             \
    X(c83, qm_command, "`cmd` is NULL", qm_command(m, NULL, NULL, 1, &out_s, err))             \
    X(c84, qm_command, "`cmd` is not valid UTF-8", qm_command(m, U, NULL, 1, &out_s, err))     \
    X(c85, qm_command, "`args_json` is not valid UTF-8", qm_command(m, "q", U, 1, &out_s, err))\
    X(c86, qm_command, "`args_json` is not valid JSON", qm_command(m, "q", "x", 1, &out_s, err))\
    X(c87, qm_command, "`args_json` must be a JSON object, got a string",                      \
      qm_command(m, "q", "\"s\"", 1, &out_s, err))                                             \
    X(c88, qm_command, "`timeout_ms`", qm_command(m, "q", NULL, -2, &out_s, err))              \
    X(c89, qm_event_wait, "`m` is NULL", qm_event_wait(NULL, "E", NULL, 0, &out_s, err))       \
    X(c90, qm_event_wait, "`name` is not valid UTF-8", qm_event_wait(m, U, NULL, 0, &out_s, err))\
    X(c91, qm_event_wait, "`match_json` is not valid UTF-8",                                   \
      qm_event_wait(m, "E", U, 0, &out_s, err))                                                \
    X(c92, qm_event_wait, "`match_json` is not valid JSON",                                    \
      qm_event_wait(m, "E", "{", 0, &out_s, err))                                              \
    X(c93, qm_event_wait, "`match_json` must be a JSON object, got a number",                  \
      qm_event_wait(m, "E", "42", 0, &out_s, err))                                             \
    X(c94, qm_event_wait, "`timeout_ms`", qm_event_wait(m, "E", NULL, -3, &out_s, err))        \
    X(c95, qm_events_wait, "`m` is NULL", qm_events_wait(NULL, F1, 0, &out_s, err))            \
    X(c96, qm_events_wait, "`filters_json` is NULL", qm_events_wait(m, NULL, 0, &out_s, err))  \
    X(c97, qm_events_wait, "`filters_json` is not valid UTF-8",                                \
      qm_events_wait(m, U, 0, &out_s, err))                                                    \
    X(c98, qm_events_wait, "`filters_json` is not valid JSON",                                 \
      qm_events_wait(m, "[[", 0, &out_s, err))                                                 \
    X(c99, qm_events_wait, "`filters_json` must be a JSON array",                              \
      qm_events_wait(m, "{}", 0, &out_s, err))                                                 \
    X(c100, qm_events_wait, "`filters_json` element 0",                                        \
      qm_events_wait(m, "[\"STOP\"]", 0, &out_s, err))                                         \
    X(c101, qm_events_wait, "`filters_json` element 1",                                        \
      qm_events_wait(m, "[[\"A\", null], [1, null]]", 0, &out_s, err))                         \
    X(c102, qm_events_wait, "`filters_json` element 0",                                        \
      qm_events_wait(m, "[[\"A\", []]]", 0, &out_s, err))                                      \
    X(c103, qm_events_wait, "`timeout_ms`", qm_events_wait(m, F1, HUGE_MS, &out_s, err))       \
    X(c104, qm_event_get, "`m` is NULL", qm_event_get(NULL, 0, &out_s, err))                   \
    X(c105, qm_event_get, "`timeout_ms`", qm_event_get(m, -7, &out_s, err))                    \
    X(c106, qm_events_take, "`m` is NULL", qm_events_take(NULL, &out_s, err))                  \
    X(c107, qm_events_dropped, "`m` is NULL", qm_events_dropped(NULL, &out_u64, err))          \
    X(c108, qm_send_fd, "`m` is NULL", qm_send_fd(NULL, 0, "n", err))                          \
    X(c109, qm_send_fd, "`fd` (-1)", qm_send_fd(m, -1, "n", err))                              \
    X(c110, qm_send_fd, "`fdname` is NULL", qm_send_fd(m, 0, NULL, err))                       \
    X(c111, qm_send_fd, "`fdname` is not valid UTF-8", qm_send_fd(m, 0, U, err))               \
    X(c112, qm_event_match, "`event_json` is NULL", qm_event_match(NULL, "{}", &out_b, err))   \
    X(c113, qm_event_match, "`event_json` is not valid UTF-8",                                 \
      qm_event_match(U, "{}", &out_b, err))                                                    \
    X(c114, qm_event_match, "`event_json` is not valid JSON",                                  \
      qm_event_match("{", "{}", &out_b, err))                                                  \
    X(c115, qm_event_match, "`match_json` is NULL", qm_event_match("{}", NULL, &out_b, err))   \
    X(c116, qm_event_match, "`match_json` is not valid JSON",                                  \
      qm_event_match("{}", "nul", &out_b, err))                                                \
    X(c117, qm_console_wait, "`m` is NULL", qm_console_wait(NULL, "s", NULL, 0, &out_s, err))  \
    X(c118, qm_console_wait, "`success` is NULL", qm_console_wait(m, NULL, NULL, 0, &out_s, err))\
    X(c119, qm_console_wait, "`success` is not valid UTF-8",                                   \
      qm_console_wait(m, U, NULL, 0, &out_s, err))                                             \
    X(c120, qm_console_wait, "`success` must not be empty",                                    \
      qm_console_wait(m, "", NULL, 0, &out_s, err))                                            \
    X(c121, qm_console_wait, "`failure` is not valid UTF-8",                                   \
      qm_console_wait(m, "s", U, 0, &out_s, err))                                              \
    X(c122, qm_console_wait, "`failure` must not be empty",                                    \
      qm_console_wait(m, "s", "", 0, &out_s, err))                                             \
    X(c123, qm_console_wait, "`timeout_ms`", qm_console_wait(m, "s", NULL, -2, &out_s, err))   \
    X(c124, qm_console_write, "`m` is NULL", qm_console_write(NULL, "x", 1, err))              \
    X(c125, qm_console_write, "`data` is NULL", qm_console_write(m, NULL, 1, err))             \
    X(c126, qm_console_exec, "`m` is NULL",                                                    \
      qm_console_exec(NULL, "c", "s", NULL, 0, &out_s, err))                                   \
    X(c127, qm_console_exec, "`command` is NULL",                                              \
      qm_console_exec(m, NULL, "s", NULL, 0, &out_s, err))                                     \
    X(c128, qm_console_exec, "`command` is not valid UTF-8",                                   \
      qm_console_exec(m, U, "s", NULL, 0, &out_s, err))                                        \
    X(c129, qm_console_exec, "`success` is NULL",                                              \
      qm_console_exec(m, "c", NULL, NULL, 0, &out_s, err))                                     \
    X(c130, qm_console_exec, "`success` is not valid UTF-8",                                   \
      qm_console_exec(m, "c", U, NULL, 0, &out_s, err))                                        \
    X(c131, qm_console_exec, "`failure` is not valid UTF-8",                                   \
      qm_console_exec(m, "c", "s", U, 0, &out_s, err))                                         \
    X(c132, qm_console_exec, "`timeout_ms`",                                                   \
      qm_console_exec(m, "c", "s", NULL, HUGE_MS, &out_s, err))                                \
    X(c133, qm_console_read, "`m` is NULL", qm_console_read(NULL, &out_s, err))                \
    X(c134, qm_console_dropped, "`m` is NULL", qm_console_dropped(NULL, &out_u64, err))        \
    X(c135, qm_command, "`cmd` must not be empty", qm_command(m, "", NULL, 1, &out_s, err))    \
    X(c136, qm_qmp_cmd, "`cmd` must not be empty", qm_qmp_cmd(m, "", NULL, 1, &out_s, err))    \
    X(c137, qm_event_wait, "`name` must not be empty", qm_event_wait(m, "", NULL, 0, &out_s, err))\
    X(c138, qm_events_wait, "`filters_json` is an empty array",                                \
      qm_events_wait(m, "[]", 0, &out_s, err))                                                 \
    X(c139, qm_events_wait, "`filters_json` element 0",                                        \
      qm_events_wait(m, "[[\"\", null]]", 0, &out_s, err))                                      \
    X(c140, qm_set_env, "`m` is NULL", qm_set_env(NULL, "A", "b", err))                        \
    X(c141, qm_set_env, "`name` is NULL", qm_set_env(m, NULL, "b", err))                       \
    X(c142, qm_set_env, "`name` is not valid UTF-8", qm_set_env(m, U, "b", err))               \
    X(c143, qm_set_env, "`value` is not valid UTF-8", qm_set_env(m, "A", U, err))              \
    X(c144, qm_set_env, "variable name must be non-empty", qm_set_env(m, "A=B", "c", err))     \
    X(c145, qm_set_env, "variable name must be non-empty", qm_set_env(m, "", NULL, err))       \
    X(c146, qm_console_read_bytes, "`m` is NULL", qm_console_read_bytes(NULL, &out_bytes, err))\
    X(c147, qm_listener_new, "`m` is NULL", qm_listener_new(NULL, NULL, &out_l, err))          \
    X(c148, qm_listener_new, "`listener` is NULL", qm_listener_new(m, NULL, NULL, err))        \
    X(c149, qm_listener_new, "`filters_json` is not valid JSON",                               \
      qm_listener_new(m, "[", &out_l, err))                                                    \
    X(c150, qm_listener_new, "`filters_json` is an empty array",                               \
      qm_listener_new(m, "[]", &out_l, err))                                                   \
    X(c151, qm_listener_new, "`filters_json` is not valid UTF-8",                              \
      qm_listener_new(m, U, &out_l, err))                                                      \
    X(c152, qm_listener_new, "`filters_json` element 0",                                       \
      qm_listener_new(m, "[[\"A\", 7]]", &out_l, err))                                         \
    X(c153, qm_listener_wait, "`l` is NULL", qm_listener_wait(NULL, 0, &out_s, err))           \
    X(c154, qm_listener_wait, "`timeout_ms`", qm_listener_wait(L, -2, &out_s, err))            \
    X(c155, qm_listener_take, "`l` is NULL", qm_listener_take(NULL, &out_s, err))              \
    X(c156, qm_listener_dropped, "`l` is NULL", qm_listener_dropped(NULL, &out_u64, err))      \
    X(c157, qm_dispatch, "`m` is NULL", qm_dispatch(NULL, err))                                \
    X(c158, qm_command_send, "`m` is NULL", qm_command_send(NULL, "q", NULL, &out_u64, err))   \
    X(c159, qm_command_send, "`cmd` is NULL", qm_command_send(m, NULL, NULL, &out_u64, err))   \
    X(c160, qm_command_send, "`cmd` must not be empty",                                        \
      qm_command_send(m, "", NULL, &out_u64, err))                                             \
    X(c161, qm_command_send, "`cmd` is not valid UTF-8",                                       \
      qm_command_send(m, U, NULL, &out_u64, err))                                              \
    X(c162, qm_command_send, "`args_json` is not valid JSON",                                  \
      qm_command_send(m, "q", "{", &out_u64, err))                                             \
    X(c163, qm_command_send, "`args_json` must be a JSON object",                              \
      qm_command_send(m, "q", "[]", &out_u64, err))                                            \
    X(c164, qm_command_send, "`ticket` is NULL", qm_command_send(m, "q", NULL, NULL, err))     \
    X(c165, qm_command_send, "noncharacter",                                                   \
      qm_command_send(m, "q", "{\"s\": \"\\uffff\"}", &out_u64, err))                          \
    X(c166, qm_command_receive, "`m` is NULL", qm_command_receive(NULL, 1, 0, &out_s, err))    \
    X(c167, qm_command_receive, "`timeout_ms`", qm_command_receive(m, 1, -2, &out_s, err))     \
    X(c168, qm_command_receive, "not outstanding",                                             \
      qm_command_receive(m, UINT64_MAX, 0, &out_s, err))                                       \
    X(c169, qm_qmp_greeting, "`m` is NULL", qm_qmp_greeting(NULL, &out_s, err))                \
    X(c170, qm_command, "noncharacter", qm_command(m, "q", "{\"s\": \"\xef\xb7\x90\"}", 1, &out_s, err))\
    X(c171, qm_qmp_cmd, "1024 levels", qm_qmp_cmd(m, "q", deep_args, 1, &out_s, err))         \
    X(c172, qm_command_send, "`args_json` is not valid UTF-8",                                 \
      qm_command_send(m, "q", U, &out_u64, err))                                               \
    X(c173, qm_command_receive, "`timeout_ms`", qm_command_receive(m, 1, HUGE_MS, &out_s, err)) \
    X(c174, qm_listener_wait, "`timeout_ms`", qm_listener_wait(L, HUGE_MS, &out_s, err))       \
    X(c175, qm_listener_new, "`filters_json` must be a JSON array",                            \
      qm_listener_new(m, "{}", &out_l, err))                                                   \
    /* The guest agent (the machine has no agent: arguments come first). */                   \
    X(c200, qm_set_agent, "`m` is NULL", qm_set_agent(NULL, NULL, err))                        \
    X(c201, qm_set_agent, "`device_type` is not valid UTF-8", qm_set_agent(m, U, err))         \
    X(c202, qm_set_agent, "device type must not be empty", qm_set_agent(m, "", err))           \
    X(c203, qm_agent_wait_ready, "`m` is NULL", qm_agent_wait_ready(NULL, 1, err))             \
    X(c204, qm_agent_wait_ready, "`timeout_ms`", qm_agent_wait_ready(m, -2, err))              \
    X(c205, qm_agent_wait_ready, "`timeout_ms`", qm_agent_wait_ready(m, HUGE_MS, err))         \
    X(c206, qm_agent_cmd, "`m` is NULL", qm_agent_cmd(NULL, "guest-ping", NULL, 1, &out_s, err))\
    X(c207, qm_agent_cmd, "`cmd` is NULL", qm_agent_cmd(m, NULL, NULL, 1, &out_s, err))        \
    X(c208, qm_agent_cmd, "`cmd` must not be empty", qm_agent_cmd(m, "", NULL, 1, &out_s, err))\
    X(c209, qm_agent_cmd, "`cmd` is not valid UTF-8", qm_agent_cmd(m, U, NULL, 1, &out_s, err))\
    X(c210, qm_agent_cmd, "`args_json` is not valid UTF-8",                                    \
      qm_agent_cmd(m, "guest-ping", U, 1, &out_s, err))                                        \
    X(c211, qm_agent_cmd, "`args_json` is not valid JSON",                                     \
      qm_agent_cmd(m, "guest-ping", "{", 1, &out_s, err))                                      \
    X(c212, qm_agent_cmd, "`args_json` must be a JSON object",                                 \
      qm_agent_cmd(m, "guest-ping", "[]", 1, &out_s, err))                                     \
    X(c213, qm_agent_cmd, "`timeout_ms`", qm_agent_cmd(m, "guest-ping", NULL, -2, &out_s, err))\
    X(c214, qm_agent_exec, "`m` is NULL",                                                      \
      qm_agent_exec(NULL, ARGV_OK, NULL, 0, 1, &out_r, err))                                   \
    X(c215, qm_agent_exec, "`argv` is NULL", qm_agent_exec(m, NULL, NULL, 0, 1, &out_r, err))  \
    X(c216, qm_agent_exec, "`argv` is empty", qm_agent_exec(m, ARGV_NONE, NULL, 0, 1, &out_r, err))\
    X(c217, qm_agent_exec, "`argv` is empty",                                                  \
      qm_agent_exec(m, ARGV_NULL_FIRST, NULL, 0, 1, &out_r, err))                              \
    X(c218, qm_agent_exec, "`argv[1]` is not valid UTF-8",                                     \
      qm_agent_exec(m, ARGV_BAD, NULL, 0, 1, &out_r, err))                                     \
    X(c219, qm_agent_exec, "`input` is NULL", qm_agent_exec(m, ARGV_OK, NULL, 3, 1, &out_r, err))\
    X(c219b, qm_agent_exec, "`argv[0]` must not be empty",                                     \
      qm_agent_exec(m, ARGV_EMPTY_PROGRAM, NULL, 0, 1, &out_r, err))                           \
    X(c220, qm_agent_exec, "`timeout_ms`",                                                     \
      qm_agent_exec(m, ARGV_OK, BYTES, 3, -2, &out_r, err))                                    \
    X(c221, qm_agent_exec, "`timeout_ms`",                                                     \
      qm_agent_exec(m, ARGV_OK, NULL, 0, HUGE_MS, &out_r, err))                                \
    X(c222, qm_agent_file_read, "`m` is NULL",                                                 \
      qm_agent_file_read(NULL, "/etc/hostname", 1, &out_bytes, err))                           \
    X(c223, qm_agent_file_read, "`guest_path` is NULL",                                        \
      qm_agent_file_read(m, NULL, 1, &out_bytes, err))                                         \
    X(c224, qm_agent_file_read, "`guest_path` must not be empty",                              \
      qm_agent_file_read(m, "", 1, &out_bytes, err))                                           \
    X(c225, qm_agent_file_read, "`guest_path` is not valid UTF-8",                             \
      qm_agent_file_read(m, U, 1, &out_bytes, err))                                            \
    X(c226, qm_agent_file_read, "`timeout_ms`",                                                \
      qm_agent_file_read(m, "/etc/hostname", -2, &out_bytes, err))                             \
    X(c227, qm_agent_file_write, "`m` is NULL",                                                \
      qm_agent_file_write(NULL, "/tmp/x", BYTES, 3, 1, err))                                   \
    X(c228, qm_agent_file_write, "`guest_path` is NULL",                                       \
      qm_agent_file_write(m, NULL, BYTES, 3, 1, err))                                          \
    X(c229, qm_agent_file_write, "`guest_path` must not be empty",                             \
      qm_agent_file_write(m, "", BYTES, 3, 1, err))                                            \
    X(c230, qm_agent_file_write, "`guest_path` is not valid UTF-8",                            \
      qm_agent_file_write(m, U, BYTES, 3, 1, err))                                             \
    X(c231, qm_agent_file_write, "`data` is NULL",                                             \
      qm_agent_file_write(m, "/tmp/x", NULL, 3, 1, err))                                       \
    X(c232, qm_agent_file_write, "`timeout_ms`",                                               \
      qm_agent_file_write(m, "/tmp/x", BYTES, 3, HUGE_MS, err))                                \
    /* qtest (the machine runs under qtest: checked before sending). */                       \
    X(c240, qm_set_qtest, "`m` is NULL", qm_set_qtest(NULL, err))                              \
    X(c241, qm_set_qtest_timeout, "`m` is NULL", qm_set_qtest_timeout(NULL, 1, err))           \
    X(c242, qm_set_qtest_timeout, "`timeout_ms`", qm_set_qtest_timeout(m, -2, err))            \
    X(c243, qm_set_qtest_timeout, "`timeout_ms`", qm_set_qtest_timeout(m, HUGE_MS, err))       \
    X(c244, qm_qtest_raw, "`m` is NULL", qm_qtest_raw(NULL, "endianness", &out_s, err))        \
    X(c245, qm_qtest_raw, "`line` is NULL", qm_qtest_raw(m, NULL, &out_s, err))                \
    X(c246, qm_qtest_raw, "`line` is not valid UTF-8", qm_qtest_raw(m, U, &out_s, err))        \
    X(c247, qm_qtest_raw, "single spaces", qm_qtest_raw(m, "", &out_s, err))                   \
    X(c248, qm_qtest_raw, "single spaces", qm_qtest_raw(m, "readb  0", &out_s, err))           \
    X(c249, qm_qtest_raw, "single spaces", qm_qtest_raw(m, " readb 0", &out_s, err))           \
    X(c250, qm_qtest_raw, "newlines", qm_qtest_raw(m, "readb 0\n", &out_s, err))               \
    X(c251, qm_qtest_raw, "newlines", qm_qtest_raw(m, "readb\t0", &out_s, err))                \
    X(c252, qm_qtest_read, "`m` is NULL", qm_qtest_read(NULL, 0, 1, &out_u64, err))            \
    X(c253, qm_qtest_read, "size must be one of [1, 2, 4, 8] bytes, got 3",                    \
      qm_qtest_read(m, 0, 3, &out_u64, err))                                                   \
    X(c254, qm_qtest_read, "got 16", qm_qtest_read(m, 0, 16, &out_u64, err))                   \
    X(c255, qm_qtest_read, "got 0", qm_qtest_read(m, 0, 0, &out_u64, err))                     \
    X(c256, qm_qtest_write, "`m` is NULL", qm_qtest_write(NULL, 0, 1, 0, err))                 \
    X(c257, qm_qtest_write, "got 3", qm_qtest_write(m, 0, 3, 0, err))                          \
    X(c258, qm_qtest_write, "got 16", qm_qtest_write(m, 0, 16, 0, err))                        \
    X(c259, qm_qtest_write, "value 0x100 does not fit in 1", qm_qtest_write(m, 0, 1, 0x100, err))\
    X(c260, qm_qtest_write, "does not fit in 2", qm_qtest_write(m, 0, 2, 0x10000, err))        \
    X(c261, qm_qtest_write, "does not fit in 4", qm_qtest_write(m, 0, 4, 0x100000000ULL, err)) \
    X(c262, qm_qtest_in, "`m` is NULL", qm_qtest_in(NULL, 0x70, 1, &out_u32, err))             \
    X(c263, qm_qtest_in, "size must be one of [1, 2, 4] bytes, got 8",                         \
      qm_qtest_in(m, 0x70, 8, &out_u32, err))                                                  \
    X(c264, qm_qtest_in, "got 3", qm_qtest_in(m, 0x70, 3, &out_u32, err))                      \
    X(c265, qm_qtest_out, "`m` is NULL", qm_qtest_out(NULL, 0x70, 1, 0, err))                  \
    X(c266, qm_qtest_out, "got 8", qm_qtest_out(m, 0x70, 8, 0, err))                           \
    X(c267, qm_qtest_out, "value 0x1ff does not fit in 1", qm_qtest_out(m, 0x70, 1, 0x1ff, err))\
    X(c268, qm_qtest_out, "does not fit in 2", qm_qtest_out(m, 0x70, 2, 0x10000, err))         \
    X(c269, qm_qtest_memread, "`m` is NULL", qm_qtest_memread(NULL, 0, out_buf, 4, err))       \
    X(c270, qm_qtest_memread, "`buf` is NULL", qm_qtest_memread(m, 0, NULL, 4, err))           \
    X(c271, qm_qtest_memread, "past the end of the address space",                             \
      qm_qtest_memread(m, UINT64_MAX - 1, out_buf, 4, err))                                    \
    X(c272, qm_qtest_memwrite, "`m` is NULL", qm_qtest_memwrite(NULL, 0, BYTES, 3, err))       \
    X(c273, qm_qtest_memwrite, "`buf` is NULL", qm_qtest_memwrite(m, 0, NULL, 3, err))         \
    X(c274, qm_qtest_memwrite, "past the end of the address space",                            \
      qm_qtest_memwrite(m, UINT64_MAX, BYTES, 2, err))                                         \
    X(c275, qm_qtest_memset, "`m` is NULL", qm_qtest_memset(NULL, 0, 0, 4, err))               \
    X(c276, qm_qtest_memset, "past the end of the address space",                              \
      qm_qtest_memset(m, UINT64_MAX, 0, 2, err))                                               \
    X(c277, qm_qtest_memset, "past the end of the address space",                              \
      qm_qtest_memset(m, 1, 0, SIZE_MAX, err))                                                 \
    X(c278, qm_qtest_clock_step, "`m` is NULL", qm_qtest_clock_step(NULL, 1, &out_i64, err))   \
    X(c279, qm_qtest_clock_set, "`m` is NULL", qm_qtest_clock_set(NULL, 1, &out_i64, err))     \
    X(c280, qm_qtest_irq_intercept_in, "`m` is NULL", qm_qtest_irq_intercept_in(NULL, "a", err))\
    X(c281, qm_qtest_irq_intercept_in, "`qom_path` is NULL",                                   \
      qm_qtest_irq_intercept_in(m, NULL, err))                                                 \
    X(c282, qm_qtest_irq_intercept_in, "`qom_path` must not be empty",                         \
      qm_qtest_irq_intercept_in(m, "", err))                                                   \
    X(c283, qm_qtest_irq_intercept_in, "`qom_path` is not valid UTF-8",                        \
      qm_qtest_irq_intercept_in(m, U, err))                                                    \
    X(c284, qm_qtest_irq_intercept_in, "QOM path must be non-empty, without spaces",           \
      qm_qtest_irq_intercept_in(m, "/machine/a b", err))                                       \
    X(c285, qm_qtest_irq_intercept_out, "`m` is NULL", qm_qtest_irq_intercept_out(NULL, "a", err))\
    X(c286, qm_qtest_irq_intercept_out, "`qom_path` is NULL",                                  \
      qm_qtest_irq_intercept_out(m, NULL, err))                                                \
    X(c287, qm_qtest_irq_intercept_out, "`qom_path` must not be empty",                        \
      qm_qtest_irq_intercept_out(m, "", err))                                                  \
    X(c288, qm_qtest_irq_intercept_out, "`qom_path` is not valid UTF-8",                       \
      qm_qtest_irq_intercept_out(m, U, err))                                                   \
    X(c289, qm_qtest_irq_intercept_out, "QOM path must be non-empty, without spaces",          \
      qm_qtest_irq_intercept_out(m, "a\nb", err))                                              \
    X(c290, qm_qtest_get_irq, "`m` is NULL", qm_qtest_get_irq(NULL, 0, &out_b, err))           \
    X(c291, qm_qtest_get_irq, "IRQ line must not be negative", qm_qtest_get_irq(m, -1, &out_b, err))\
    X(c292, qm_qtest_set_irq_in, "`m` is NULL", qm_qtest_set_irq_in(NULL, "a", "b", 0, 1, err))\
    X(c293, qm_qtest_set_irq_in, "`qom_path` is NULL", qm_qtest_set_irq_in(m, NULL, "b", 0, 1, err))\
    X(c294, qm_qtest_set_irq_in, "`qom_path` must not be empty",                               \
      qm_qtest_set_irq_in(m, "", "b", 0, 1, err))                                              \
    X(c295, qm_qtest_set_irq_in, "`qom_path` is not valid UTF-8",                              \
      qm_qtest_set_irq_in(m, U, "b", 0, 1, err))                                               \
    X(c296, qm_qtest_set_irq_in, "QOM path must be non-empty, without spaces",                 \
      qm_qtest_set_irq_in(m, "a b", "b", 0, 1, err))                                           \
    X(c297, qm_qtest_set_irq_in, "`name` is NULL", qm_qtest_set_irq_in(m, "a", NULL, 0, 1, err))\
    X(c298, qm_qtest_set_irq_in, "`name` must not be empty",                                   \
      qm_qtest_set_irq_in(m, "a", "", 0, 1, err))                                              \
    X(c299, qm_qtest_set_irq_in, "`name` is not valid UTF-8",                                  \
      qm_qtest_set_irq_in(m, "a", U, 0, 1, err))                                               \
    X(c300, qm_qtest_set_irq_in, "IRQ name must be non-empty, without spaces",                 \
      qm_qtest_set_irq_in(m, "a", "b c", 0, 1, err))                                           \
    X(c301, qm_qtest_set_irq_in, "IRQ line must not be negative",                              \
      qm_qtest_set_irq_in(m, "a", "b", -1, 1, err))                                            \
    /* Harness calls. */                                                                       \
    X(c310, qm_save_artifacts, "`m` is NULL", qm_save_artifacts(NULL, "/tmp/a", err))          \
    X(c311, qm_save_artifacts, "`dir` is NULL", qm_save_artifacts(m, NULL, err))               \
    X(c312, qm_save_artifacts, "`dir` must not be empty", qm_save_artifacts(m, "", err))       \
    X(c313, qm_save_artifacts, "`dir` is not valid UTF-8", qm_save_artifacts(m, U, err))       \
    X(c314, qm_probe, "`binary` is NULL", qm_probe(NULL, "machine", "pc", 1, &out_b, err))     \
    X(c315, qm_probe, "`binary` must not be empty", qm_probe("", "machine", "pc", 1, &out_b, err))\
    X(c316, qm_probe, "`binary` is not valid UTF-8", qm_probe(U, "machine", "pc", 1, &out_b, err))\
    X(c317, qm_probe, "`what` is NULL", qm_probe("qemu", NULL, "pc", 1, &out_b, err))          \
    X(c318, qm_probe, "`what` is not valid UTF-8", qm_probe("qemu", U, "pc", 1, &out_b, err))  \
    X(c319, qm_probe, "unknown capability \"machines\"",                                       \
      qm_probe("qemu", "machines", "pc", 1, &out_b, err))                                      \
    X(c320, qm_probe, "unknown capability \"\"", qm_probe("qemu", "", "pc", 1, &out_b, err))   \
    X(c321, qm_probe, "`name` is NULL", qm_probe("qemu", "machine", NULL, 1, &out_b, err))     \
    X(c322, qm_probe, "`name` is not valid UTF-8", qm_probe("qemu", "machine", U, 1, &out_b, err))\
    X(c323, qm_probe, "`timeout_ms`", qm_probe("qemu", "machine", "pc", -2, &out_b, err))      \
    X(c324, qm_probe, "`timeout_ms`", qm_probe("qemu", "machine", "pc", HUGE_MS, &out_b, err)) \
    X(c325, qm_migrate, "`src` is NULL", qm_migrate(NULL, m, 1000, err))                       \
    X(c326, qm_migrate, "`dst` is NULL", qm_migrate(m, NULL, 1000, err))                       \
    X(c327, qm_migrate, "`timeout_ms`", qm_migrate(m, m, -2, err))                             \
    X(c328, qm_migrate, "`timeout_ms`", qm_migrate(m, m, HUGE_MS, err))

static char long_path[300];

#define DEFINE_CASE(id, fn, text, call)                  \
    static qm_status id(qm_machine *m, qm_error **err) { \
        (void)m;                                         \
        return call;                                     \
    }
CASES(DEFINE_CASE)

struct bad_case {
    const char *function;
    const char *expected;
    qm_status (*call)(qm_machine *m, qm_error **err);
};

#define ROW(id, fn, text, call) {#fn, text, id},
static const struct bad_case TABLE[] = {CASES(ROW)};

static void run_table(qm_machine *m) {
    size_t i, n = sizeof TABLE / sizeof TABLE[0];
    for (i = 0; i < n; i++) {
        qm_error *err = NULL;
        qm_status status;
        reset_outputs();
        status = TABLE[i].call(m, &err);
        if (status != QM_ERR_INVALID_ARGUMENT || err == NULL ||
            qm_error_status(err) != QM_ERR_INVALID_ARGUMENT ||
            strstr(qm_error_message(err), TABLE[i].expected) == NULL || !outputs_untouched()) {
            fprintf(stderr, "case %zu (%s): status %d, message \"%s\", expected \"%s\"%s\n", i,
                    TABLE[i].function, (int)status, err ? qm_error_message(err) : "(no error)",
                    TABLE[i].expected, outputs_untouched() ? "" : ", outputs written");
            exit(1);
        }
        qm_error_free(err);
        /* And with err NULL: the same status, nothing else. */
        reset_outputs();
        CHECK(TABLE[i].call(m, NULL) == QM_ERR_INVALID_ARGUMENT);
        CHECK(outputs_untouched());
    }
    printf("bad_input: %zu table cases\n", n);
}

static void functions_without_status(void) {
    int i;
    for (i = -3; i <= 20; i++) {
        CHECK(qm_status_str(i) != NULL);
    }
    CHECK(strcmp(qm_status_str(INT_MIN), "unknown status") == 0);
    CHECK(strcmp(qm_status_str(INT_MAX), "unknown status") == 0);
    CHECK(qm_version() != NULL);
    CHECK(qm_error_status(NULL) == QM_ERR_INVALID_ARGUMENT);
    CHECK(qm_error_message(NULL) == NULL);
    CHECK(qm_error_qmp_class(NULL) == NULL);
    CHECK(qm_error_qmp_desc(NULL) == NULL);
    CHECK(!qm_is_running(NULL));
    CHECK(qm_pid(NULL) == -1);
    CHECK(qm_machine_fd(NULL) == -1);
    CHECK(qm_listener_fd(NULL) == -1);
    qm_error_free(NULL);
    qm_string_free(NULL);
    qm_machine_free(NULL);
    qm_listener_free(NULL);
    qm_bytes_free(NULL);
    {
        size_t len = 77;
        CHECK(qm_exec_result_exit_code(NULL) == -1);
        CHECK(qm_exec_result_stdout(NULL, &len) == NULL && len == 0);
        len = 77;
        CHECK(qm_exec_result_stderr(NULL, &len) == NULL && len == 0);
        CHECK(qm_exec_result_stdout(NULL, NULL) == NULL);
        CHECK(qm_exec_result_stderr(NULL, NULL) == NULL);
        CHECK(!qm_exec_result_truncated(NULL));
        qm_exec_result_free(NULL);
    }
    {
        qm_bytes empty = {NULL, 0};
        qm_bytes_free(&empty);
        CHECK(empty.data == NULL && empty.len == 0);
    }
}

int main(void) {
    qm_machine *m = none_machine();
    char *reply = NULL;
    size_t i;
    memset(long_path, 'x', sizeof long_path - 1);
    long_path[0] = '/';
    /* {"a": [[[...]]]}: 1100 levels inside the arguments. */
    strcpy(deep_args, "{\"a\":");
    for (i = 0; i < 1100; i++) strcat(deep_args, "[");
    for (i = 0; i < 1100; i++) strcat(deep_args, "]");
    strcat(deep_args, "}");
    functions_without_status();
    /* Under qtest (with TCG: no module needed), so that qtest's own checks
     * are reached. */
    OK(qm_set_qtest, m);
    OK(qm_launch, m);
    OK(qm_listener_new, m, NULL, &L);
    run_table(m);
    qm_listener_free(L);
    /* The machine is unharmed. */
    OK(qm_command, m, "query-status", NULL, 5000, NULL);
    OK(qm_qtest_raw, m, "endianness", &reply);
    CHECK(strcmp(reply, "OK little") == 0);
    qm_string_free(reply);
    OK(qm_shutdown, m, 10000);
    qm_machine_free(m);
    printf("bad_input: ok\n");
    return 0;
}
