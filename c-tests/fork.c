/* fork() without exec in a host that has machines (C test frameworks that
 * fork per test do this): in the child, inherited machines are inert —
 * calls are refused naming the owner, freeing releases memory only — and
 * new machines launch normally. Also SIGCHLD set to be ignored: a clean
 * quit whose exit status the kernel threw away is reported as unknown,
 * and the status text agrees. */
#include "qm_test.h"

#include <sys/wait.h>

/* Run `child` in a forked child; fail if it fails or hangs. */
static void in_child(void (*child)(qm_machine *), qm_machine *arg) {
    int status = 0;
    double t0;
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        child(arg);
        exit(0);
    }
    t0 = now_ms();
    while (waitpid(pid, &status, WNOHANG) == 0) {
        if (now_ms() - t0 > 30000) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            fprintf(stderr, "the forked child hung\n");
            exit(1);
        }
        sleep_ms(10);
    }
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

static void child_with_inherited_machine(qm_machine *inherited) {
    char owner[32];
    int qemu = -1;
    qm_machine *own = none_machine();
    snprintf(owner, sizeof owner, "%d", (int)getppid());
    EXPECT_MSG(QM_ERR_STATE, owner, qm_command, inherited, "query-status", NULL, 5000, NULL);
    EXPECT_MSG(QM_ERR_STATE, "fork", qm_launch, inherited);
    CHECK(!qm_is_running(inherited));
    CHECK(qm_pid(inherited) == -1);
    /* A machine of the child's own. */
    OK(qm_launch, own);
    OK(qm_command, own, "query-status", NULL, 5000, NULL);
    qemu = qm_pid(own);
    CHECK(qemu > 0);
    OK(qm_shutdown, own, 10000);
    qm_machine_free(own);
    /* Freeing the inherited copy: memory only, the parent's QEMU lives. */
    qm_machine_free(inherited);
}

static void child_with_sigchld_ignored(qm_machine *unused) {
    qm_machine *m = none_machine();
    qm_error *err;
    (void)unused;
    signal(SIGCHLD, SIG_IGN);
    OK(qm_launch, m);
    err = EXPECT(QM_ERR_ABNORMAL_SHUTDOWN, qm_shutdown, m, 10000);
    CHECK(strstr(qm_error_message(err), "exit status unknown") != NULL);
    CHECK(strstr(qm_error_message(err), "killed") == NULL);
    CHECK(strstr(qm_status_str(QM_ERR_ABNORMAL_SHUTDOWN), "killed") == NULL);
    qm_error_free(err);
    qm_machine_free(m);
}

int main(void) {
    qm_machine *m = none_machine();
    int qemu;
    OK(qm_launch, m);
    qemu = qm_pid(m);
    in_child(child_with_inherited_machine, m);
    CHECK(process_exists(qemu));
    OK(qm_command, m, "query-status", NULL, 5000, NULL);
    in_child(child_with_sigchld_ignored, NULL);
    OK(qm_shutdown, m, 10000);
    qm_machine_free(m);
    printf("fork: ok\n");
    return 0;
}
