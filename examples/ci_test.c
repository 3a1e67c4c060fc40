/*
 * A test for CI that leaves evidence when it fails: a failed check saves
 * the machine's artifacts (QEMU's log, every event, the command line, how
 * the run ended) into $QM_ARTIFACTS_DIR, or a new directory under /tmp,
 * and prints where. CI keeps that directory.
 *
 * It checks that QEMU is running after stop and cont; set
 * CI_TEST_EXPECT_STATUS=paused to watch it fail.
 */
#define _POSIX_C_SOURCE 200809L

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <qemu_machine.h>

static qm_machine *m;

/* Save the artifacts, say where, exit non-zero. */
static void fail(const char *what) {
    char tmp[] = "/tmp/qm-artifacts-XXXXXX";
    const char *dir = getenv("QM_ARTIFACTS_DIR") != NULL ? getenv("QM_ARTIFACTS_DIR") : mkdtemp(tmp);
    qm_error *err = NULL;
    fprintf(stderr, "FAILED: %s\n", what);
    if (dir != NULL && qm_save_artifacts(m, dir, &err) == QM_OK) {
        fprintf(stderr, "artifacts saved in %s\n", dir);
    } else {
        fprintf(stderr, "no artifacts: %s\n", err != NULL ? qm_error_message(err) : "no directory");
    }
    qm_error_free(err);
    qm_machine_free(m);
    exit(1);
}

/* CHECK(condition); CALL(a library call that sets `err` on failure). */
#define CHECK(cond)           \
    do {                      \
        if (!(cond)) {        \
            fail(#cond);      \
        }                     \
    } while (0)
#define CALL(call)                                                   \
    do {                                                             \
        qm_error *err = NULL;                                        \
        if ((call) != QM_OK) {                                       \
            fprintf(stderr, "%s: %s\n", #call, qm_error_message(err)); \
            qm_error_free(err);                                      \
            fail(#call);                                             \
        }                                                            \
    } while (0)

int main(void) {
    const char *expected = getenv("CI_TEST_EXPECT_STATUS") != NULL ? getenv("CI_TEST_EXPECT_STATUS")
                                                                    : "running";
    char *status = NULL;

    CALL(qm_machine_new("qemu-system-x86_64", &m, &err));
    CALL(qm_set_machine_type(m, "none", &err));
    CALL(qm_add_arg(m, "-nodefaults", &err));
    CALL(qm_launch(m, &err));
    CALL(qm_command(m, "stop", NULL, 10000, NULL, &err));
    CALL(qm_command(m, "cont", NULL, 10000, NULL, &err));
    CALL(qm_command(m, "query-status", NULL, 10000, &status, &err));
    printf("query-status: %s\n", status);
    CHECK(strstr(status, expected) != NULL);
    qm_string_free(status);
    CALL(qm_shutdown(m, 10000, &err));
    qm_machine_free(m);
    printf("ci_test: passed\n");
    return 0;
}
