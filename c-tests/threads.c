/* Threads sharing one machine: an event wait in one thread while another
 * sends commands; several threads sending commands at once; machines
 * launched concurrently from several threads. */
#include "qm_test.h"

#include <pthread.h>

struct waiter {
    qm_machine *m;
    qm_status status;
    char *event;
};

static void *wait_for_stop(void *arg) {
    struct waiter *w = arg;
    w->status = qm_event_wait(w->m, "STOP", NULL, 20000, &w->event, NULL);
    return NULL;
}

struct hammer {
    qm_machine *m;
    int failures;
};

static void *many_commands(void *arg) {
    struct hammer *h = arg;
    int i;
    for (i = 0; i < 200; i++) {
        char *out = NULL;
        qm_error *err = NULL;
        if (qm_command(h->m, "query-status", NULL, 10000, &out, &err) != QM_OK) {
            fprintf(stderr, "query-status failed: %s\n", qm_error_message(err));
            qm_error_free(err);
            h->failures++;
            continue;
        }
        if (strstr(out, "\"status\"") == NULL) {
            h->failures++;
        }
        qm_string_free(out);
    }
    return NULL;
}

static void *own_machine(void *arg) {
    int *failures = arg;
    qm_machine *m = NULL;
    qm_error *err = NULL;
    char *ev = NULL;
    const char *q = getenv("QM_TEST_QEMU");
    if (qm_machine_new(q != NULL ? q : "qemu-system-x86_64", &m, &err) != QM_OK ||
        qm_set_machine_type(m, "none", &err) != QM_OK || qm_add_arg(m, "-accel", &err) != QM_OK ||
        qm_add_arg(m, "tcg", &err) != QM_OK || qm_launch(m, &err) != QM_OK ||
        qm_command(m, "stop", NULL, 10000, NULL, &err) != QM_OK ||
        qm_event_wait(m, "STOP", NULL, 10000, &ev, &err) != QM_OK ||
        qm_shutdown(m, 10000, &err) != QM_OK) {
        fprintf(stderr, "own machine: %s\n", err != NULL ? qm_error_message(err) : "?");
        qm_error_free(err);
        (*failures)++;
    }
    qm_string_free(ev);
    qm_machine_free(m);
    return NULL;
}

int main(void) {
    qm_machine *m = none_machine();
    struct waiter w;
    struct hammer h[4];
    pthread_t t, ts[4];
    int i, failures[4] = {0, 0, 0, 0};

    OK(qm_launch, m);

    /* One thread waits for STOP while this one runs commands. */
    w.m = m;
    w.status = QM_ERR_PANIC;
    w.event = NULL;
    CHECK(pthread_create(&t, NULL, wait_for_stop, &w) == 0);
    for (i = 0; i < 50; i++) {
        OK(qm_command, m, "query-status", NULL, 5000, NULL);
    }
    OK(qm_command, m, "stop", NULL, 5000, NULL);
    CHECK(pthread_join(t, NULL) == 0);
    CHECK(w.status == QM_OK);
    CHECK(take_contains(w.event, "\"STOP\""));
    OK(qm_command, m, "cont", NULL, 5000, NULL);

    /* Four threads hammer the same machine. */
    for (i = 0; i < 4; i++) {
        h[i].m = m;
        h[i].failures = 0;
        CHECK(pthread_create(&ts[i], NULL, many_commands, &h[i]) == 0);
    }
    for (i = 0; i < 4; i++) {
        CHECK(pthread_join(ts[i], NULL) == 0);
        CHECK(h[i].failures == 0);
    }
    OK(qm_shutdown, m, 10000);
    qm_machine_free(m);

    /* Four machines, each in its own thread, at the same time. */
    for (i = 0; i < 4; i++) {
        CHECK(pthread_create(&ts[i], NULL, own_machine, &failures[i]) == 0);
    }
    for (i = 0; i < 4; i++) {
        CHECK(pthread_join(ts[i], NULL) == 0);
        CHECK(failures[i] == 0);
    }
    printf("threads: ok\n");
    return 0;
}
