/* The serial console through the C API, against the real Linux guest
 * (QM_TEST_GUEST_DIR: vmlinux + initramfs.cpio.gz from
 * scripts/build-guest.sh). */
#include "qm_test.h"

#include <pthread.h>

#define PROMPT "guest# "

/* The guest of qm_test.h, its console optionally copied to a file. */
static qm_machine *guest_machine(const char *console_log) {
    qm_machine *m = new_guest_machine();
    if (console_log != NULL) {
        OK(qm_set_console_log, m, console_log);
    }
    return m;
}

static void boot(qm_machine *m) {
    char *out = NULL;
    OK(qm_launch, m);
    OK(qm_console_wait, m, "QM-GUEST-READY", "Kernel panic", 60000, &out);
    CHECK(take_contains(out, "Linux version"));
    OK(qm_console_wait, m, PROMPT, NULL, 60000, NULL);
}

static void exec_timeout_failure_poweroff(void) {
    char log_path[] = "/tmp/qm-c-console-XXXXXX";
    int fd = mkstemp(log_path), code = -1;
    qm_machine *m;
    char *out = NULL;
    FILE *f;
    char text[65536];
    size_t n;
    double t0;

    CHECK(fd >= 0);
    close(fd);
    m = guest_machine(log_path);
    boot(m);

    OK(qm_console_exec, m, "echo $((6*7))", "42", NULL, 10000, &out);
    CHECK(take_contains(out, "echo $((6*7))"));
    OK(qm_console_wait, m, PROMPT, NULL, 10000, &out); /* no newline after it */
    CHECK(take_contains(out, PROMPT));

    /* After an answer comes the prompt: the output seen so far. */
    OK(qm_console_exec, m, "echo partial-$((1+1))", "partial-2", NULL, 10000, NULL);
    t0 = now_ms();
    EXPECT_MSG(QM_ERR_TIMEOUT, PROMPT, qm_console_wait, m, "NEVER-SEEN", NULL, 500, &out);
    CHECK(now_ms() - t0 >= 499 && now_ms() - t0 < 2000);

    EXPECT_MSG(QM_ERR_CONSOLE_FAILURE, "FAIL-2", qm_console_exec, m,
               "echo FAIL-$((1+1)); sleep 1; echo OK-$((1+2))", "OK-3", "FAIL-2", 10000, &out);
    OK(qm_console_wait, m, "OK-3", NULL, 10000, NULL);

    OK(qm_console_write, m, "echo w-$((3*3))\r", strlen("echo w-$((3*3))\r"));
    OK(qm_console_wait, m, "w-9", NULL, 10000, NULL);
    OK(qm_console_wait, m, PROMPT, NULL, 10000, NULL);
    OK(qm_console_read, m, &out);
    CHECK(strstr(out, "w-9") == NULL);
    qm_string_free(out);

    OK(qm_console_write, m, "poweroff -f\r", strlen("poweroff -f\r"));
    OK(qm_wait, m, 60000);
    OK(qm_exit_code, m, &code);
    CHECK(code == 0);
    OK(qm_event_wait, m, "SHUTDOWN", "{\"data\": {\"guest\": true}}", 0, &out);
    CHECK(take_contains(out, "guest-shutdown"));
    FAILS(QM_ERR_STATE, qm_console_write, m, "x", 1);
    qm_machine_free(m);

    f = fopen(log_path, "rb");
    CHECK(f != NULL);
    n = fread(text, 1, sizeof text - 1, f);
    text[n] = '\0';
    fclose(f);
    CHECK(strstr(text, "Linux version") != NULL);
    CHECK(strstr(text, "QM-GUEST-READY") != NULL);
    unlink(log_path);
}

struct waiter {
    qm_machine *m;
    qm_status status;
    char message[4096];
};

static void *wait_forever(void *arg) {
    struct waiter *w = arg;
    qm_error *err = NULL;
    w->status = qm_console_wait(w->m, "NEVER-SEEN", NULL, -1, NULL, &err);
    snprintf(w->message, sizeof w->message, "%s", err != NULL ? qm_error_message(err) : "");
    qm_error_free(err);
    return NULL;
}

static void kill_during_console_wait(void) {
    qm_machine *m = guest_machine(NULL);
    struct waiter w;
    pthread_t t;
    double t0;
    boot(m);
    w.m = m;
    w.status = QM_OK;
    CHECK(pthread_create(&t, NULL, wait_forever, &w) == 0);
    sleep_ms(300);
    t0 = now_ms();
    kill(qm_pid(m), SIGKILL);
    CHECK(pthread_join(t, NULL) == 0);
    CHECK(now_ms() - t0 < 2000);
    CHECK(w.status == QM_ERR_DISCONNECTED);
    CHECK(strstr(w.message, "signal 9") != NULL);
    FAILS(QM_ERR_ABNORMAL_SHUTDOWN, qm_shutdown, m, 5000);
    qm_machine_free(m);
}

int main(void) {
    exec_timeout_failure_poweroff();
    kill_during_console_wait();
    printf("console: ok\n");
    return 0;
}
