/* QMP through the C API: raw replies, return values, QMP errors with class
 * and description, arguments, quit handling. */
#include "qm_test.h"

int main(void) {
    qm_machine *m = none_machine();
    char *out = NULL;
    qm_error *e;
    int code = -1;

    EXPECT_MSG(QM_ERR_STATE, "not been launched", qm_command, m, "query-status", NULL, 1000, &out);
    OK(qm_launch, m);

    /* Whole reply, without the library's id. */
    OK(qm_qmp_cmd, m, "query-status", NULL, 5000, &out);
    CHECK(strstr(out, "\"return\"") != NULL);
    CHECK(strstr(out, "\"id\"") == NULL);
    qm_string_free(out);

    /* An error reply is still QM_OK for qm_qmp_cmd. */
    OK(qm_qmp_cmd, m, "no-such-command", NULL, 5000, &out);
    CHECK(strstr(out, "\"CommandNotFound\"") != NULL);
    CHECK(strstr(out, "\"id\"") == NULL);
    qm_string_free(out);

    /* ...and QM_ERR_COMMAND for qm_command, with class and desc. */
    out = NULL;
    e = EXPECT(QM_ERR_COMMAND, qm_command, m, "no-such-command", NULL, 5000, &out);
    CHECK(out == NULL); /* outputs only on QM_OK */
    CHECK(strcmp(qm_error_qmp_class(e), "CommandNotFound") == 0);
    CHECK(strstr(qm_error_qmp_desc(e), "no-such-command") != NULL);
    CHECK(strstr(qm_error_message(e), qm_error_qmp_desc(e)) != NULL);
    qm_error_free(e);

    /* Arguments as a JSON object. */
    OK(qm_command, m, "qom-get", "{\"path\": \"/machine\", \"property\": \"type\"}", 5000, &out);
    CHECK(take_contains(out, "none-machine"));
    e = EXPECT(QM_ERR_COMMAND, qm_command, m, "qom-get", "{\"path\": \"/nope\", \"property\": \"x\"}",
               5000, NULL);
    CHECK(strcmp(qm_error_qmp_class(e), "DeviceNotFound") == 0 ||
          strcmp(qm_error_qmp_class(e), "GenericError") == 0);
    qm_error_free(e);

    /* Result discarded. */
    OK(qm_command, m, "query-status", NULL, 5000, NULL);
    OK(qm_qmp_cmd, m, "query-status", NULL, -1, NULL);

    /* A large reply. */
    OK(qm_command, m, "query-qmp-schema", NULL, 10000, &out);
    CHECK(strlen(out) > 50000);
    CHECK(take_contains(out, "\"query-status\""));

    /* quit through the API; shutdown then only waits. */
    OK(qm_command, m, "quit", NULL, 5000, &out);
    CHECK(take_contains(out, "{}"));
    OK(qm_shutdown, m, 10000);
    OK(qm_exit_code, m, &code);
    CHECK(code == 0);
    EXPECT_MSG(QM_ERR_STATE, "shut down", qm_command, m, "query-status", NULL, 1000, &out);

    qm_machine_free(m);
    printf("qmp: ok\n");
    return 0;
}
