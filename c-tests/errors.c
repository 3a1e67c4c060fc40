/* Bad input through the C API: NULL pointers, invalid UTF-8, invalid JSON,
 * JSON of the wrong type, bad timeouts. Never a crash: always
 * QM_ERR_INVALID_ARGUMENT with a message naming the parameter, and outputs
 * left untouched. */
#include "qm_test.h"

#include <limits.h>

static const char BAD_UTF8[] = {'a', (char)0xff, 'b', 0};
static char *const SENTINEL = (char *)"untouched";

#define INVALID(param, fn, ...) EXPECT_MSG(QM_ERR_INVALID_ARGUMENT, param, fn, __VA_ARGS__)

static void statuses_and_errors(void) {
    int i;
    for (i = 0; i <= 12; i++) {
        const char *s = qm_status_str(i);
        CHECK(s != NULL && strlen(s) > 0 && strcmp(s, "unknown status") != 0);
    }
    CHECK(strcmp(qm_status_str(-1), "unknown status") == 0);
    CHECK(strcmp(qm_status_str(13), "unknown status") == 0);
    CHECK(strcmp(qm_status_str(INT_MAX), "unknown status") == 0);
    CHECK(strcmp(qm_status_str(INT_MIN), "unknown status") == 0);
    CHECK(QM_OK == 0 && QM_ERR_INVALID_ARGUMENT == 1 && QM_ERR_STATE == 2 && QM_ERR_LAUNCH == 3 &&
          QM_ERR_TIMEOUT == 4 && QM_ERR_DISCONNECTED == 5 && QM_ERR_PROTOCOL == 6 &&
          QM_ERR_COMMAND == 7 && QM_ERR_ABNORMAL_SHUTDOWN == 8 && QM_ERR_IO == 9 &&
          QM_ERR_ADD_DEVICE == 10 && QM_ERR_PANIC == 11 && QM_ERR_CONSOLE_FAILURE == 12);

    CHECK(qm_error_status(NULL) == QM_ERR_INVALID_ARGUMENT);
    CHECK(qm_error_message(NULL) == NULL);
    CHECK(qm_error_qmp_class(NULL) == NULL);
    CHECK(qm_error_qmp_desc(NULL) == NULL);
    qm_error_free(NULL);
    qm_string_free(NULL);
    qm_machine_free(NULL);
    CHECK(qm_version() != NULL);
}

static void constructor(void) {
    qm_machine *m = (qm_machine *)SENTINEL;
    INVALID("`binary` is NULL", qm_machine_new, NULL, &m);
    INVALID("`binary` is not valid UTF-8", qm_machine_new, BAD_UTF8, &m);
    CHECK(m == (qm_machine *)SENTINEL);
    INVALID("`out` is NULL", qm_machine_new, "qemu", NULL);
    /* err NULL: the status still comes back. */
    CHECK(qm_machine_new(NULL, &m, NULL) == QM_ERR_INVALID_ARGUMENT);
}

static void null_machine(void) {
    char *out = SENTINEL;
    int code = 77;
    uint64_t count = 77;
    INVALID("`m` is NULL", qm_add_arg, NULL, "-S");
    INVALID("`m` is NULL", qm_add_wrapper_arg, NULL, "env");
    INVALID("`m` is NULL", qm_set_name, NULL, "n");
    INVALID("`m` is NULL", qm_set_base_temp_dir, NULL, "/tmp");
    INVALID("`m` is NULL", qm_set_log_dir, NULL, "/tmp");
    INVALID("`m` is NULL", qm_set_machine_type, NULL, "none");
    INVALID("`m` is NULL", qm_set_qmp_enabled, NULL, true);
    INVALID("`m` is NULL", qm_set_launch_timeout, NULL, 1000);
    INVALID("`m` is NULL", qm_add_monitor_null, NULL);
    INVALID("`m` is NULL", qm_launch, NULL);
    INVALID("`m` is NULL", qm_shutdown, NULL, 1000);
    INVALID("`m` is NULL", qm_kill, NULL);
    INVALID("`m` is NULL", qm_wait, NULL, 0);
    INVALID("`m` is NULL", qm_exit_code, NULL, &code);
    INVALID("`m` is NULL", qm_log, NULL, &out);
    INVALID("`m` is NULL", qm_temp_dir, NULL, &out);
    INVALID("`m` is NULL", qm_qmp_cmd, NULL, "query-status", NULL, 1000, &out);
    INVALID("`m` is NULL", qm_command, NULL, "query-status", NULL, 1000, &out);
    INVALID("`m` is NULL", qm_event_wait, NULL, "STOP", NULL, 0, &out);
    INVALID("`m` is NULL", qm_events_wait, NULL, "[]", 0, &out);
    INVALID("`m` is NULL", qm_event_get, NULL, 0, &out);
    INVALID("`m` is NULL", qm_events_take, NULL, &out);
    INVALID("`m` is NULL", qm_events_dropped, NULL, &count);
    CHECK(!qm_is_running(NULL));
    CHECK(qm_pid(NULL) == -1);
    CHECK(out == SENTINEL && code == 77 && count == 77);
}

static void strings_json_timeouts(qm_machine *m) {
    char *out = SENTINEL;
    const char *bad_timeouts_msg = "`timeout_ms` must be -1";

    INVALID("`arg` is NULL", qm_add_arg, m, NULL);
    INVALID("`arg` is not valid UTF-8", qm_add_arg, m, BAD_UTF8);
    INVALID("`arg` is NULL", qm_add_wrapper_arg, m, NULL);
    INVALID("`arg` is not valid UTF-8", qm_add_wrapper_arg, m, BAD_UTF8);
    INVALID("`name` is NULL", qm_set_name, m, NULL);
    INVALID("`name` is not valid UTF-8", qm_set_name, m, BAD_UTF8);
    INVALID("`name` must be a non-empty file name", qm_set_name, m, "a/b");
    INVALID("`name` must be a non-empty file name", qm_set_name, m, "");
    INVALID("`dir` is NULL", qm_set_base_temp_dir, m, NULL);
    INVALID("`dir` is not valid UTF-8", qm_set_base_temp_dir, m, BAD_UTF8);
    INVALID("`dir` is NULL", qm_set_log_dir, m, NULL);
    INVALID("`dir` is not valid UTF-8", qm_set_log_dir, m, BAD_UTF8);
    INVALID("`machine_type` is NULL", qm_set_machine_type, m, NULL);
    INVALID("`machine_type` is not valid UTF-8", qm_set_machine_type, m, BAD_UTF8);
    INVALID(bad_timeouts_msg, qm_set_launch_timeout, m, -2);
    INVALID(bad_timeouts_msg, qm_set_launch_timeout, m, INT64_MAX);

    OK(qm_launch, m);

    INVALID("`cmd` is NULL", qm_qmp_cmd, m, NULL, NULL, 1000, &out);
    INVALID("`cmd` is not valid UTF-8", qm_qmp_cmd, m, BAD_UTF8, NULL, 1000, &out);
    INVALID("`args_json` is not valid UTF-8", qm_qmp_cmd, m, "query-status", BAD_UTF8, 1000, &out);
    INVALID("`args_json` is not valid JSON", qm_qmp_cmd, m, "query-status", "{\"a\":", 1000, &out);
    INVALID("`args_json` must be a JSON object", qm_qmp_cmd, m, "query-status", "[1]", 1000, &out);
    INVALID("`args_json` must be a JSON object", qm_qmp_cmd, m, "query-status", "null", 1000, &out);
    INVALID(bad_timeouts_msg, qm_qmp_cmd, m, "query-status", NULL, -2, &out);
    INVALID(bad_timeouts_msg, qm_qmp_cmd, m, "query-status", NULL, INT64_MIN, &out);
    INVALID(bad_timeouts_msg, qm_qmp_cmd, m, "query-status", NULL, QM_TIMEOUT_MAX_MS + 1, &out);

    INVALID("`cmd` is NULL", qm_command, m, NULL, NULL, 1000, &out);
    INVALID("`cmd` is not valid UTF-8", qm_command, m, BAD_UTF8, NULL, 1000, &out);
    INVALID("`args_json` is not valid JSON", qm_command, m, "query-status", "nope", 1000, &out);
    INVALID("`args_json` must be a JSON object", qm_command, m, "query-status", "\"s\"", 1000, &out);
    INVALID(bad_timeouts_msg, qm_command, m, "query-status", NULL, -5, &out);

    INVALID("`name` is not valid UTF-8", qm_event_wait, m, BAD_UTF8, NULL, 0, &out);
    INVALID("`match_json` is not valid UTF-8", qm_event_wait, m, "STOP", BAD_UTF8, 0, &out);
    INVALID("`match_json` is not valid JSON", qm_event_wait, m, "STOP", "{", 0, &out);
    INVALID("`match_json` must be a JSON object", qm_event_wait, m, "STOP", "42", 0, &out);
    INVALID(bad_timeouts_msg, qm_event_wait, m, "STOP", NULL, -3, &out);

    INVALID("`filters_json` is NULL", qm_events_wait, m, NULL, 0, &out);
    INVALID("`filters_json` is not valid UTF-8", qm_events_wait, m, BAD_UTF8, 0, &out);
    INVALID("`filters_json` is not valid JSON", qm_events_wait, m, "[[", 0, &out);
    INVALID("`filters_json` must be a JSON array", qm_events_wait, m, "{}", 0, &out);
    INVALID("`filters_json` element 0", qm_events_wait, m, "[\"STOP\"]", 0, &out);
    INVALID("`filters_json` element 1", qm_events_wait, m, "[[\"STOP\", null], [\"X\"]]", 0, &out);
    INVALID("`filters_json` element 0", qm_events_wait, m, "[[1, null]]", 0, &out);
    INVALID("`filters_json` element 0", qm_events_wait, m, "[[\"STOP\", 1]]", 0, &out);
    INVALID(bad_timeouts_msg, qm_events_wait, m, "[]", INT64_MAX, &out);

    INVALID(bad_timeouts_msg, qm_event_get, m, -7, &out);
    INVALID(bad_timeouts_msg, qm_shutdown, m, -2);
    INVALID(bad_timeouts_msg, qm_wait, m, INT64_MAX);

    CHECK(out == SENTINEL);
    /* The machine is still fine after all that. */
    OK(qm_command, m, "query-status", NULL, 5000, NULL);
    OK(qm_shutdown, m, 10000);
}

int main(void) {
    qm_machine *m;
    statuses_and_errors();
    constructor();
    null_machine();
    m = none_machine();
    strings_json_timeouts(m);
    qm_machine_free(m);
    printf("errors: ok\n");
    return 0;
}
