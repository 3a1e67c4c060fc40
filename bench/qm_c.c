/*
 * Contender (b): qemu-machine through its C API.
 *
 * Besides the common metrics (bench.h) it runs two of its own, each
 * measuring several variants in the same process on the same QEMU, in
 * alternating blocks:
 *
 *   fanout N    stop -> STOP event in hand, N samples of each variant:
 *               "queue" (qm_event_wait on the machine's queue), "l1" (one
 *               listener), "l8" (eight listeners, all waited for by the
 *               thread that sent `stop`), "l8t" (eight listeners, each
 *               waited for by a thread of its own; the sample ends when
 *               the last of them has the event), and as a reference for
 *               that one "q8t" (no listener: the sending thread takes the
 *               event from the machine's queue and posts a semaphore of
 *               each of eight threads; the sample ends when the last of
 *               them runs) — what waking eight threads costs here.
 *   pipeline N  N batches of 1000 query-status of each variant: "seq"
 *               (qm_command one after the other) and "pipe" (all sent
 *               with qm_command_send, then all received with
 *               qm_command_receive); a sample is a whole batch.
 */
#include "bench.h"

#include <qemu_machine.h>
#include <semaphore.h>

struct vm {
    qm_machine *m;
};

static void check(qm_status status, qm_error *err, const char *what) {
    if (status != QM_OK) {
        die("%s: %s", what, err != NULL ? qm_error_message(err) : qm_status_str((int)status));
    }
}

static struct vm *qm_launch_vm(void) {
    struct vm *vm = calloc(1, sizeof *vm);
    qm_error *err = NULL;
    check(qm_machine_new(qemu_binary(), &vm->m, &err), err, "qm_machine_new");
    check(qm_set_machine_type(vm->m, "none", &err), err, "machine type");
    check(qm_add_arg(vm->m, "-nodefaults", &err), err, "arg");
    check(qm_add_arg(vm->m, "-accel", &err), err, "arg");
    check(qm_add_arg(vm->m, "tcg", &err), err, "arg");
    check(qm_launch(vm->m, &err), err, "qm_launch");
    return vm;
}

static char *qm_command_text(struct vm *vm, const char *cmd) {
    char *out = NULL;
    qm_error *err = NULL;
    check(qm_command(vm->m, cmd, NULL, 30000, &out, &err), err, cmd);
    return out;
}

static void qm_free_text(char *text) { qm_string_free(text); }

static void qm_wait_event(struct vm *vm, const char *name) {
    qm_error *err = NULL;
    check(qm_event_wait(vm->m, name, NULL, 30000, NULL, &err), err, name);
}

static void qm_shutdown_vm(struct vm *vm) {
    qm_error *err = NULL;
    check(qm_shutdown(vm->m, 30000, &err), err, "qm_shutdown");
    qm_machine_free(vm->m);
    free(vm);
}

/* ---- fanout ---- */

enum { LISTENERS = 8 };

/* A thread waiting on one listener, once per generation. */
struct waiter {
    qm_listener *l;
    pthread_t thread;
    struct fanout *f;
    sem_t go;   /* q8t: posted when the event is in hand */
    double got; /* when it had the event in hand */
};

struct fanout {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    unsigned generation; /* bumped to start a wait */
    int ready;           /* waiters about to wait in this generation */
    int done;            /* waiters that have the event */
    int quit;
    struct waiter w[LISTENERS];
};

static void *waiter_main(void *arg) {
    struct waiter *w = arg;
    struct fanout *f = w->f;
    unsigned seen = 0;
    for (;;) {
        qm_error *err = NULL;
        pthread_mutex_lock(&f->lock);
        while (f->generation == seen && !f->quit) {
            pthread_cond_wait(&f->cond, &f->lock);
        }
        if (f->quit) {
            pthread_mutex_unlock(&f->lock);
            return NULL;
        }
        seen = f->generation;
        f->ready++;
        pthread_cond_broadcast(&f->cond);
        pthread_mutex_unlock(&f->lock);
        if (w->l != NULL) {
            check(qm_listener_wait(w->l, 30000, NULL, &err), err, "qm_listener_wait");
            w->got = now_us();
            pthread_mutex_lock(&f->lock);
        } else {
            while (sem_wait(&w->go) != 0) {
            }
            w->got = now_us();
            pthread_mutex_lock(&f->lock);
        }
        f->done++;
        pthread_cond_broadcast(&f->cond);
        pthread_mutex_unlock(&f->lock);
    }
}

static const char *const FANOUT_VARIANTS[] = {"queue", "l1", "l8", "l8t", "q8t"};
enum { NVARIANTS = 5 };

/* One block of `count` timed samples (after 3 untimed) of variant `v`. */
static void fanout_block(struct vm *vm, int v, int count) {
    struct fanout f;
    int listeners = v == 0 || v == 4 ? 0 : v == 1 ? 1 : LISTENERS;
    int threaded = v >= 3, threads = threaded ? LISTENERS : 0;
    int i, k;
    qm_error *err = NULL;
    memset(&f, 0, sizeof f);
    pthread_mutex_init(&f.lock, NULL);
    pthread_cond_init(&f.cond, NULL);
    for (k = 0; k < listeners; k++) {
        check(qm_listener_new(vm->m, "[[\"STOP\", null]]", &f.w[k].l, &err), err,
              "qm_listener_new");
    }
    for (k = 0; k < threads; k++) {
        f.w[k].f = &f;
        sem_init(&f.w[k].go, 0, 0);
        if (pthread_create(&f.w[k].thread, NULL, waiter_main, &f.w[k]) != 0) {
            die("pthread_create");
        }
    }
    for (i = -3; i < count; i++) {
        double t, end = 0;
        if (threaded) {
            /* Every waiter on its way into qm_listener_wait first. */
            pthread_mutex_lock(&f.lock);
            f.ready = 0;
            f.done = 0;
            f.generation++;
            pthread_cond_broadcast(&f.cond);
            while (f.ready < threads) {
                pthread_cond_wait(&f.cond, &f.lock);
            }
            pthread_mutex_unlock(&f.lock);
        }
        t = now_us();
        command_checked(vm, "stop");
        if (v == 0) {
            qm_wait_event(vm, "STOP");
            end = now_us();
        } else if (v == 4) {
            qm_wait_event(vm, "STOP");
            for (k = 0; k < threads; k++) {
                sem_post(&f.w[k].go);
            }
            pthread_mutex_lock(&f.lock);
            while (f.done < threads) {
                pthread_cond_wait(&f.cond, &f.lock);
            }
            pthread_mutex_unlock(&f.lock);
            for (k = 0; k < threads; k++) {
                end = f.w[k].got > end ? f.w[k].got : end;
            }
        } else if (!threaded) {
            for (k = 0; k < listeners; k++) {
                check(qm_listener_wait(f.w[k].l, 30000, NULL, &err), err, "qm_listener_wait");
            }
            end = now_us();
        } else {
            pthread_mutex_lock(&f.lock);
            while (f.done < threads) {
                pthread_cond_wait(&f.cond, &f.lock);
            }
            pthread_mutex_unlock(&f.lock);
            for (k = 0; k < threads; k++) {
                end = f.w[k].got > end ? f.w[k].got : end;
            }
        }
        if (i >= 0) {
            series_add(FANOUT_VARIANTS[v], end - t);
        }
        command_checked(vm, "cont");
        qm_wait_event(vm, "RESUME");
        /* The machine's queue also got the STOP (listener variants). */
        check(qm_events_take(vm->m, NULL, &err), err, "qm_events_take");
    }
    pthread_mutex_lock(&f.lock);
    f.quit = 1;
    pthread_cond_broadcast(&f.cond);
    pthread_mutex_unlock(&f.lock);
    for (k = 0; k < threads; k++) {
        pthread_join(f.w[k].thread, NULL);
        sem_destroy(&f.w[k].go);
    }
    for (k = 0; k < listeners; k++) {
        qm_listener_free(f.w[k].l);
    }
    pthread_cond_destroy(&f.cond);
    pthread_mutex_destroy(&f.lock);
}

static void metric_fanout(int n) {
    enum { BLOCK = 25 };
    struct vm *vm = qm_launch_vm();
    int done, v, block = 0;
    for (done = 0; done < n; done += BLOCK, block++) {
        int count = n - done < BLOCK ? n - done : BLOCK;
        /* The order of the variants rotates from block to block. */
        for (v = 0; v < NVARIANTS; v++) {
            fanout_block(vm, (v + block) % NVARIANTS, count);
        }
    }
    qm_shutdown_vm(vm);
}

/* ---- pipeline ---- */

static void metric_pipeline(int n) {
    enum { BATCH = 1000 };
    static uint64_t tickets[BATCH];
    struct vm *vm = qm_launch_vm();
    int r, i, v;
    for (i = 0; i < 200; i++) { /* warm-up */
        command_checked(vm, "query-status");
    }
    for (r = 0; r < n; r++) {
        for (v = 0; v < 2; v++) {
            int pipe = (v + r) % 2; /* alternate which goes first */
            double t = now_us();
            qm_error *err = NULL;
            if (!pipe) {
                for (i = 0; i < BATCH; i++) {
                    command_checked(vm, "query-status");
                }
            } else {
                for (i = 0; i < BATCH; i++) {
                    check(qm_command_send(vm->m, "query-status", NULL, &tickets[i], &err), err,
                          "qm_command_send");
                }
                for (i = 0; i < BATCH; i++) {
                    char *reply = NULL;
                    check(qm_command_receive(vm->m, tickets[i], 30000, &reply, &err), err,
                          "qm_command_receive");
                    if (strncmp(reply, "{\"return\"", 9) != 0) {
                        die("query-status failed: %s", reply);
                    }
                    qm_string_free(reply);
                }
            }
            series_add(pipe ? "pipe" : "seq", now_us() - t);
        }
    }
    qm_shutdown_vm(vm);
}

static int qm_extra(const char *metric, int n) {
    if (strcmp(metric, "fanout") == 0) {
        metric_fanout(n);
    } else if (strcmp(metric, "pipeline") == 0) {
        metric_pipeline(n);
    } else {
        return 0;
    }
    return 1;
}

static const struct driver QM = {"qemu-machine-c", qm_launch_vm,  qm_command_text, qm_free_text,
                                 qm_wait_event,    qm_shutdown_vm, qm_extra};

int main(int argc, char **argv) { return bench_main(&QM, argc, argv); }
