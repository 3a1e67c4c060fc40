/* Lifecycle through the C API: launch, status, shutdown, exit codes, kill,
 * wait, relaunch, launch failures, free of a running machine. */
#include "qm_test.h"

#include <sys/wait.h>

static void launch_query_shutdown(void) {
    qm_machine *m = none_machine();
    char base[] = "/tmp/qm-c-lifecycle-XXXXXX";
    char *status = NULL, *dir = NULL, *log = NULL;
    int code = 12345, pid;
    struct stat st;

    CHECK(mkdtemp(base) != NULL);
    OK(qm_set_base_temp_dir, m, base);
    OK(qm_set_name, m, "c-lifecycle");
    CHECK(!qm_is_running(m));
    CHECK(qm_pid(m) == -1);
    EXPECT_MSG(QM_ERR_STATE, "not been started", qm_exit_code, m, &code);
    EXPECT_MSG(QM_ERR_STATE, "not been launched", qm_log, m, &log);

    OK(qm_launch, m);
    CHECK(qm_is_running(m));
    pid = qm_pid(m);
    CHECK(pid > 0 && process_exists(pid));
    EXPECT_MSG(QM_ERR_STATE, "still running", qm_exit_code, m, &code);
    EXPECT_MSG(QM_ERR_STATE, "already launched", qm_launch, m);
    EXPECT_MSG(QM_ERR_STATE, "launched", qm_add_arg, m, "-S");

    OK(qm_temp_dir, m, &dir);
    CHECK(strncmp(dir, base, strlen(base)) == 0);
    CHECK(stat(dir, &st) == 0 && (st.st_mode & 0777) == 0700);

    OK(qm_command, m, "query-status", NULL, 5000, &status);
    CHECK(take_contains(status, "\"running\""));
    OK(qm_log, m, &log);
    qm_string_free(log);

    OK(qm_shutdown, m, 10000);
    CHECK(!qm_is_running(m));
    CHECK(qm_pid(m) == -1);
    OK(qm_exit_code, m, &code);
    CHECK(code == 0);
    CHECK(stat(dir, &st) != 0); /* the temporary directory is gone */
    qm_string_free(dir);
    OK(qm_exit_code, m, NULL); /* the result may be discarded */
    OK(qm_shutdown, m, 1000);  /* not launched any more: no-op */
    OK(qm_log, m, &log);       /* still readable */
    qm_string_free(log);
    FAILS(QM_ERR_STATE, qm_temp_dir, m, &dir);

    /* Configure again and relaunch. */
    OK(qm_set_launch_timeout, m, 20000);
    OK(qm_add_monitor_null, m);
    OK(qm_launch, m);
    OK(qm_kill, m);
    OK(qm_exit_code, m, &code);
    CHECK(code == -SIGKILL);
    OK(qm_kill, m);
    qm_machine_free(m);
    CHECK(rmdir(base) == 0); /* nothing left inside */
}

static void launch_failures(void) {
    qm_machine *m = none_machine();
    qm_error *e;
    const char *msg;
    int code = 0;
    double t0;

    OK(qm_add_arg, m, "-bogus");
    t0 = now_ms();
    e = EXPECT(QM_ERR_LAUNCH, qm_launch, m);
    CHECK(now_ms() - t0 < 5000); /* at once, not after the 30 s timeout */
    msg = qm_error_message(e);
    CHECK(strstr(msg, "-bogus: invalid option") != NULL);
    CHECK(strstr(msg, "exited with status 1") != NULL);
    CHECK(strstr(msg, "-machine none") != NULL); /* the command line */
    CHECK(qm_error_qmp_class(e) == NULL);
    qm_error_free(e);
    OK(qm_exit_code, m, &code);
    CHECK(code == 1);
    CHECK(!qm_is_running(m));
    qm_machine_free(m);

    OK(qm_machine_new, "/nonexistent/qemu", &m);
    EXPECT_MSG(QM_ERR_LAUNCH, "No such file", qm_launch, m);
    FAILS(QM_ERR_STATE, qm_exit_code, m, &code);
    qm_machine_free(m);

    /* A binary that never greets: the launch timeout applies. */
    OK(qm_machine_new, "/bin/sleep", &m);
    OK(qm_add_wrapper_arg, m, "/bin/sh");
    OK(qm_add_wrapper_arg, m, "-c");
    OK(qm_add_wrapper_arg, m, "exec sleep 30");
    OK(qm_set_launch_timeout, m, 300);
    t0 = now_ms();
    EXPECT_MSG(QM_ERR_LAUNCH, "within 300 ms", qm_launch, m);
    CHECK(now_ms() - t0 < 5000);
    OK(qm_exit_code, m, &code);
    CHECK(code == -SIGKILL);
    qm_machine_free(m);
}

static void wait_and_abnormal_shutdown(void) {
    qm_machine *m = none_machine();
    int code = 0, pid;

    OK(qm_launch, m);
    FAILS(QM_ERR_TIMEOUT, qm_wait, m, 0);
    FAILS(QM_ERR_TIMEOUT, qm_wait, m, 100);
    CHECK(qm_is_running(m));
    kill(qm_pid(m), SIGTERM);
    OK(qm_wait, m, 10000);
    OK(qm_exit_code, m, &code);
    CHECK(code == 0);

    OK(qm_launch, m);
    pid = qm_pid(m);
    kill(pid, SIGSTOP);
    EXPECT_MSG(QM_ERR_ABNORMAL_SHUTDOWN, "SIGKILL", qm_shutdown, m, 300);
    OK(qm_exit_code, m, &code);
    CHECK(code == -SIGKILL);
    CHECK(!qm_is_running(m));
    qm_machine_free(m);
}

static void free_kills_a_running_machine(void) {
    qm_machine *m = none_machine();
    int pid;
    OK(qm_launch, m);
    pid = qm_pid(m);
    CHECK(process_exists(pid));
    qm_machine_free(m);
    /* Reaped by the library: no child with that pid is left to wait for. */
    CHECK(waitpid(pid, NULL, WNOHANG) == -1 && errno == ECHILD);
}

int main(void) {
    CHECK(strcmp(qm_version(), QM_VERSION_STRING) == 0);
    launch_query_shutdown();
    launch_failures();
    wait_and_abnormal_shutdown();
    free_kills_a_running_machine();
    qm_machine_free(NULL);
    printf("lifecycle: ok\n");
    return 0;
}
