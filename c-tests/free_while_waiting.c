/* qm_machine_free while other threads are blocked in calls on the same
 * machine: the calls are woken and return, then the memory goes. Under
 * valgrind any touch of freed memory would show. */
#include "qm_test.h"

#include <pthread.h>
#include <sys/wait.h>

struct blocked {
    qm_machine *m;
    int which;
    qm_status status;
};

static void *block(void *arg) {
    struct blocked *b = arg;
    switch (b->which) {
    case 0:
        b->status = qm_event_wait(b->m, "NEVER", NULL, -1, NULL, NULL);
        break;
    case 1:
        b->status = qm_wait(b->m, -1, NULL);
        break;
    case 2:
        b->status = qm_events_wait(b->m, "[[\"NEVER\", null]]", -1, NULL, NULL);
        break;
    default: {
        qm_error *err = NULL;
        b->status = qm_launch(b->m, &err);
        /* The error outlives the machine. */
        if (b->status == QM_ERR_LAUNCH && strstr(qm_error_message(err), "cancelled") == NULL) {
            fprintf(stderr, "launch error does not say it was cancelled: %s\n",
                    qm_error_message(err));
            b->status = QM_ERR_PANIC;
        }
        qm_error_free(err);
        break;
    }
    }
    return NULL;
}

/* Freeing a machine while another thread is in qm_launch: the launch is
 * cancelled (QEMU killed), returns, then the memory goes. */
static void during_launch(void) {
    qm_machine *m = none_machine();
    struct blocked b;
    pthread_t t;
    int pid;
    double t0;
    OK(qm_add_wrapper_arg, m, "sh");
    OK(qm_add_wrapper_arg, m, "-c");
    OK(qm_add_wrapper_arg, m, "sleep 1; exec \"$@\"");
    OK(qm_add_wrapper_arg, m, "sh");
    b.m = m;
    b.which = 3;
    b.status = QM_ERR_PANIC;
    CHECK(pthread_create(&t, NULL, block, &b) == 0);
    t0 = now_ms();
    while ((pid = qm_pid(m)) < 0) {
        CHECK(now_ms() - t0 < 10000);
        sleep_ms(1);
    }
    t0 = now_ms();
    qm_machine_free(m);
    CHECK(now_ms() - t0 < 2000);
    CHECK(pthread_join(t, NULL) == 0);
    CHECK(b.status == QM_ERR_LAUNCH);
    CHECK(waitpid(pid, NULL, WNOHANG) == -1 && errno == ECHILD);
}

/* The same for a machine attached to a QEMU started elsewhere: freeing it
 * disconnects (the QEMU lives on) and wakes the waiter. */
static void attached(void) {
    char dir[] = "/tmp/qm-c-free-XXXXXX", sock[128], qmp[160];
    char *argv[] = {(char *)qemu_binary(), "-display", "none", "-machine", "none", "-accel", "tcg",
                    "-nodefaults", "-qmp", qmp, NULL};
    qm_machine *m = NULL;
    struct blocked b;
    pthread_t t;
    pid_t pid;
    int i, status = 0;
    CHECK(mkdtemp(dir) != NULL);
    snprintf(sock, sizeof sock, "%s/qmp.sock", dir);
    snprintf(qmp, sizeof qmp, "unix:%s,server=on,wait=off", sock);
    pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        execvp(argv[0], argv);
        _exit(127);
    }
    for (i = 0; i < 500 && qm_attach_unix(sock, 5000, &m, NULL) != QM_OK; i++) {
        sleep_ms(20);
    }
    CHECK(m != NULL);
    b.m = m;
    b.which = 0;
    b.status = QM_ERR_PANIC;
    CHECK(pthread_create(&t, NULL, block, &b) == 0);
    sleep_ms(200);
    qm_machine_free(m);
    CHECK(pthread_join(t, NULL) == 0);
    CHECK(b.status == QM_ERR_DISCONNECTED);
    CHECK(kill(pid, 0) == 0); /* still running: not ours to kill */
    kill(pid, SIGTERM);
    CHECK(waitpid(pid, &status, 0) == pid);
    unlink(sock);
    rmdir(dir);
}

int main(void) {
    int round;
    for (round = 0; round < 3; round++) {
        qm_machine *m = none_machine();
        struct blocked b[3];
        pthread_t t[3];
        int i, pid;
        double t0;
        OK(qm_launch, m);
        pid = qm_pid(m);
        for (i = 0; i < 3; i++) {
            b[i].m = m;
            b[i].which = i;
            b[i].status = QM_ERR_PANIC;
            CHECK(pthread_create(&t[i], NULL, block, &b[i]) == 0);
        }
        sleep_ms(200);
        t0 = now_ms();
        qm_machine_free(m);
        CHECK(now_ms() - t0 < 2000);
        for (i = 0; i < 3; i++) {
            CHECK(pthread_join(t[i], NULL) == 0);
        }
        CHECK(b[0].status == QM_ERR_DISCONNECTED);
        CHECK(b[1].status == QM_OK); /* QEMU exited (it was killed) */
        CHECK(b[2].status == QM_ERR_DISCONNECTED);
        /* QEMU was killed and reaped by the library. */
        CHECK(waitpid(pid, NULL, WNOHANG) == -1 && errno == ECHILD);
    }
    attached();
    during_launch();
    printf("free_while_waiting: ok\n");
    return 0;
}
