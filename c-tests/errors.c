/* Statuses and error objects through the C API: stable values, static
 * descriptions, the error object's accessors on real failures, err NULL. */
#include "qm_test.h"

#include <limits.h>

static void statuses(void) {
    int i, j;
    for (i = 0; i <= 12; i++) {
        const char *s = qm_status_str(i);
        CHECK(s != NULL && strlen(s) > 0 && strcmp(s, "unknown status") != 0);
        for (j = 0; j < i; j++) {
            CHECK(strcmp(s, qm_status_str(j)) != 0);
        }
    }
    CHECK(strcmp(qm_status_str(-1), "unknown status") == 0);
    CHECK(strcmp(qm_status_str(13), "unknown status") == 0);
    CHECK(strcmp(qm_status_str(INT_MAX), "unknown status") == 0);
    CHECK(QM_OK == 0 && QM_ERR_INVALID_ARGUMENT == 1 && QM_ERR_STATE == 2 && QM_ERR_LAUNCH == 3 &&
          QM_ERR_TIMEOUT == 4 && QM_ERR_DISCONNECTED == 5 && QM_ERR_PROTOCOL == 6 &&
          QM_ERR_COMMAND == 7 && QM_ERR_ABNORMAL_SHUTDOWN == 8 && QM_ERR_IO == 9 &&
          QM_ERR_ADD_DEVICE == 10 && QM_ERR_PANIC == 11 && QM_ERR_CONSOLE_FAILURE == 12);
    CHECK(QM_TIMEOUT_FOREVER == -1 && QM_TIMEOUT_MAX_MS == INT32_MAX);
}

static void error_objects(void) {
    qm_machine *m = none_machine();
    qm_error *e;
    char *out = NULL;

    /* err NULL: the status alone. */
    CHECK(qm_command(m, "query-status", NULL, 1000, &out, NULL) == QM_ERR_STATE);
    CHECK(out == NULL);

    e = EXPECT(QM_ERR_STATE, qm_command, m, "query-status", NULL, 1000, &out);
    CHECK(qm_error_qmp_class(e) == NULL && qm_error_qmp_desc(e) == NULL);
    qm_error_free(e);

    OK(qm_launch, m);
    e = EXPECT(QM_ERR_COMMAND, qm_command, m, "qom-get", "{\"path\": \"/machine\"}", 5000, &out);
    CHECK(strcmp(qm_error_qmp_class(e), "GenericError") == 0);
    CHECK(strstr(qm_error_qmp_desc(e), "property") != NULL);
    CHECK(strstr(qm_error_message(e), "qom-get") != NULL);
    CHECK(strstr(qm_error_message(e), qm_error_qmp_desc(e)) != NULL);
    qm_error_free(e);

    e = EXPECT(QM_ERR_TIMEOUT, qm_event_wait, m, "NEVER", NULL, 0, &out);
    CHECK(strstr(qm_error_message(e), "no NEVER within 0 ms") != NULL);
    CHECK(qm_error_qmp_class(e) == NULL);
    qm_error_free(e);
    OK(qm_shutdown, m, 10000);
    qm_machine_free(m);
}

int main(void) {
    statuses();
    error_objects();
    printf("errors: ok\n");
    return 0;
}
