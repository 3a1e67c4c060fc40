/*
 * Shared by the C contenders of the benchmark: the metric driver, timing,
 * and the report format. A contender implements `struct driver` for its
 * way of talking to QEMU; main() here runs one metric and prints one JSON
 * object on stdout for bench/bench.py:
 *
 *   {"samples_us": [...], "peak_rss_kib": N, "threads_per_vm": X,
 *    "fds_per_vm": Y, "series": {"NAME": [...], ...}}
 *
 * "series" holds metrics that measure several variants in one run (the
 * contender's own extra metrics); it is empty for the common ones.
 *
 * Every QEMU runs `-display none -vga none -nodefaults -machine none
 * -accel tcg` (plus what the driver adds for its monitor).
 */
#ifndef QM_BENCH_H
#define QM_BENCH_H

#define _GNU_SOURCE

#include <dirent.h>
#include <jansson.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* One QEMU as a contender drives it. */
struct vm;

struct driver {
    const char *name;
    /* Start QEMU and complete QMP negotiation. */
    struct vm *(*launch)(void);
    /* Run `cmd` (no arguments) and return the reply's "return" as JSON
     * text, owned by the caller (free with driver.free_text). */
    char *(*command)(struct vm *vm, const char *cmd);
    void (*free_text)(char *text);
    /* Wait for the named event (also one that arrived while a command
     * waited for its reply). */
    void (*event_wait)(struct vm *vm, const char *name);
    /* quit, wait for QEMU to exit, reap it, free everything. */
    void (*shutdown)(struct vm *vm);
    /* Metrics only this contender runs (NULL: none): run `metric` with
     * `n` iterations and return 1, or return 0 if it is not one of them. */
    int (*extra_metric)(const char *metric, int n);
};

static const struct driver *DRIVER;

static void die(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "%s: ", DRIVER != NULL ? DRIVER->name : "bench");
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(1);
}

static double now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

/* A numeric field of /proc/self/status ("Threads:", "VmHWM:"). */
static long status_field(const char *name) {
    char line[256];
    long value = -1;
    size_t len = strlen(name);
    FILE *f = fopen("/proc/self/status", "r");
    while (f != NULL && fgets(line, sizeof line, f) != NULL) {
        if (strncmp(line, name, len) == 0) {
            value = strtol(line + len, NULL, 10);
        }
    }
    if (f != NULL) {
        fclose(f);
    }
    return value;
}

static long threads_now(void) { return status_field("Threads:"); }

/* Open descriptors of this process (the entries of /proc/self/fd, less
 * the one opendir uses to list them). */
static long fds_now(void) {
    long count = 0;
    struct dirent *e;
    DIR *d = opendir("/proc/self/fd");
    if (d == NULL) {
        return -1;
    }
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] != '.') {
            count++;
        }
    }
    closedir(d);
    return count - 1;
}

/* Peak RSS of this program (VmHWM). Not getrusage's ru_maxrss: exec keeps
 * the maximum of the image it replaced, here the Python driver. */
static long peak_rss_kib(void) { return status_field("VmHWM:"); }

/* ---- the report ---- */

static double THREADS_PER_VM, FDS_PER_VM;

/* Named series of samples (an extra metric's variants). */
static struct series {
    char name[32];
    double *v;
    int n, cap;
} SERIES[8];
static int NSERIES;

static inline void series_add(const char *name, double value) {
    int i;
    for (i = 0; i < NSERIES && strcmp(SERIES[i].name, name) != 0; i++) {
    }
    if (i == NSERIES) {
        if (NSERIES == (int)(sizeof SERIES / sizeof SERIES[0])) {
            die("too many series");
        }
        snprintf(SERIES[i].name, sizeof SERIES[i].name, "%s", name);
        NSERIES++;
    }
    if (SERIES[i].n == SERIES[i].cap) {
        SERIES[i].cap = SERIES[i].cap * 2 + 64;
        SERIES[i].v = realloc(SERIES[i].v, sizeof(double) * (size_t)SERIES[i].cap);
    }
    SERIES[i].v[SERIES[i].n++] = value;
}

static void print_samples(const double *samples, int n) {
    int i;
    putchar('[');
    for (i = 0; i < n; i++) {
        printf("%s%.3f", i ? ", " : "", samples[i]);
    }
    putchar(']');
}

static void report(const double *samples, int n) {
    int i;
    printf("{\"samples_us\": ");
    print_samples(samples, n);
    printf(", \"peak_rss_kib\": %ld, \"threads_per_vm\": %.3f, \"fds_per_vm\": %.3f, "
           "\"series\": {",
           peak_rss_kib(), THREADS_PER_VM, FDS_PER_VM);
    for (i = 0; i < NSERIES; i++) {
        printf("%s\"%s\": ", i ? ", " : "", SERIES[i].name);
        print_samples(SERIES[i].v, SERIES[i].n);
    }
    printf("}}\n");
}

static void command_checked(struct vm *vm, const char *cmd) {
    DRIVER->free_text(DRIVER->command(vm, cmd));
}

/* ---- metrics ---- */

static void metric_cycle(int n, double *s) {
    int i;
    for (i = 0; i < n; i++) {
        double t = now_us();
        DRIVER->shutdown(DRIVER->launch());
        s[i] = now_us() - t;
    }
}

static void metric_rtt(int n, double *s) {
    struct vm *vm = DRIVER->launch();
    int i;
    for (i = 0; i < 200; i++) { /* warm-up */
        command_checked(vm, "query-status");
    }
    for (i = 0; i < n; i++) {
        double t = now_us();
        command_checked(vm, "query-status");
        s[i] = now_us() - t;
    }
    DRIVER->shutdown(vm);
}

/* Launch, `n` query-status, shut down: bench.py runs this under strace
 * twice, with two values of `n`, and counts the bytes sent on the socket. */
static void metric_wire(int n) {
    struct vm *vm = DRIVER->launch();
    int i;
    for (i = 0; i < n; i++) {
        command_checked(vm, "query-status");
    }
    DRIVER->shutdown(vm);
}

/* launch -> QMP ready while the launching process holds GiB of touched
 * memory (fork copies the caller's page tables; that is what this shows).
 * `sizes` lists the sizes ("0,4,8"): one process per size (this one holds
 * the first, forked children the others, before any launch), each holding
 * its memory itself. They take turns, one launch each, passing a token
 * around a ring of pipes, so that drifting load on the machine hits every
 * size alike; only one launches at a time. Each runs `n` timed launches
 * (after one untimed), reported as series "0", "4", "8". The shutdown is
 * not timed. */
enum { READY_MAX_SIZES = 8, READY_MAX_N = 400 };

struct ready_result {
    int index, count;
    double v[READY_MAX_N];
};

/* The memory held, until the process exits (a global, so that the
 * compiler cannot drop the malloc and memset as unused). */
static char *volatile HELD;

static void hold_gib(int gib) {
    size_t size = (size_t)gib << 30;
    if (size == 0) {
        return;
    }
    HELD = malloc(size);
    if (HELD == NULL) {
        die("cannot allocate %d GiB", gib);
    }
    memset(HELD, 1, size);
}

static void ready_turns(int token_in, int token_out, int first, int n, struct ready_result *r) {
    char token = 't';
    int i;
    r->count = 0;
    for (i = -1; i < n; i++) { /* one untimed launch first */
        double t;
        struct vm *vm;
        if (!first || i > -1) {
            if (read(token_in, &token, 1) != 1) {
                die("ready: lost the token");
            }
        }
        t = now_us();
        vm = DRIVER->launch();
        if (i >= 0) {
            r->v[r->count++] = now_us() - t;
        }
        DRIVER->shutdown(vm);
        if (write(token_out, &token, 1) != 1) {
            die("ready: cannot pass the token");
        }
    }
}

static void metric_ready(const char *sizes, int n) {
    int gib[READY_MAX_SIZES], k = 0, i, j;
    int ring[READY_MAX_SIZES][2], results[2];
    pid_t kids[READY_MAX_SIZES];
    const char *p = sizes;
    static struct ready_result r;
    char ready;
    while (*p != '\0') {
        char *end;
        if (k == READY_MAX_SIZES) {
            die("too many sizes in %s", sizes);
        }
        gib[k++] = (int)strtol(p, &end, 10);
        if (end == p) {
            die("bad sizes %s", sizes);
        }
        p = *end == ',' ? end + 1 : end;
    }
    if (n > READY_MAX_N) {
        die("at most %d launches", READY_MAX_N);
    }
    if (pipe(results) != 0) {
        die("pipe");
    }
    for (i = 0; i < k; i++) {
        if (pipe(ring[i]) != 0) {
            die("pipe");
        }
    }
    /* Process i reads ring[i] and writes ring[(i + 1) % k]. */
    fflush(stdout);
    for (i = 1; i < k; i++) {
        kids[i] = fork();
        if (kids[i] < 0) {
            die("fork");
        }
        if (kids[i] == 0) {
            for (j = 0; j < k; j++) { /* only its own ends of the ring */
                if (j != i) {
                    close(ring[j][0]);
                }
                if (j != (i + 1) % k) {
                    close(ring[j][1]);
                }
            }
            close(results[0]);
            hold_gib(gib[i]);
            if (write(results[1], "r", 1) != 1) {
                _exit(1);
            }
            ready_turns(ring[i][0], ring[(i + 1) % k][1], 0, n, &r);
            r.index = i;
            if (write(results[1], &r, sizeof r) != (ssize_t)sizeof r) {
                _exit(1);
            }
            _exit(0);
        }
    }
    for (j = 0; j < k; j++) {
        if (j != 0) {
            close(ring[j][0]);
        }
        if (j != 1 % k) {
            close(ring[j][1]);
        }
    }
    close(results[1]);
    hold_gib(gib[0]);
    for (i = 1; i < k; i++) { /* every process holds its memory */
        if (read(results[0], &ready, 1) != 1) {
            die("ready: a holder died");
        }
    }
    ready_turns(ring[0][0], ring[1 % k][1], 1, n, &r);
    if (k > 1 && read(ring[0][0], &ready, 1) != 1) { /* the last turn */
        die("ready: lost the token");
    }
    for (j = 0; j < k; j++) {
        char name[16];
        if (j > 0) {
            if (read(results[0], &r, sizeof r) != (ssize_t)sizeof r) {
                die("ready: no result from a holder");
            }
        } else {
            r.index = 0;
        }
        snprintf(name, sizeof name, "%d", gib[r.index]);
        for (i = 0; i < r.count; i++) {
            series_add(name, r.v[i]);
        }
    }
    for (i = 1; i < k; i++) {
        waitpid(kids[i], NULL, 0);
    }
}

static void metric_schema(int n, double *s) {
    struct vm *vm = DRIVER->launch();
    int i;
    for (i = -2; i < n; i++) {
        double t = now_us();
        char *text = DRIVER->command(vm, "query-qmp-schema");
        json_error_t error;
        json_t *schema = json_loads(text, 0, &error);
        if (schema == NULL || json_array_size(schema) < 100) {
            die("query-qmp-schema did not parse: %s", error.text);
        }
        json_decref(schema);
        DRIVER->free_text(text);
        if (i >= 0) {
            s[i] = now_us() - t;
        }
    }
    DRIVER->shutdown(vm);
}

static void metric_stop_event(int n, double *s) {
    struct vm *vm = DRIVER->launch();
    int i;
    for (i = -5; i < n; i++) {
        double t = now_us();
        command_checked(vm, "stop");
        DRIVER->event_wait(vm, "STOP");
        if (i >= 0) {
            s[i] = now_us() - t;
        }
        command_checked(vm, "cont");
        DRIVER->event_wait(vm, "RESUME");
    }
    DRIVER->shutdown(vm);
}

struct worker {
    int commands;
    int count;
    struct vm **vms;
    pthread_barrier_t *up, *counted;
};

static void *run_vm(void *arg) {
    struct worker *w = arg;
    struct vm *vm = DRIVER->launch();
    int i;
    for (i = 0; i < w->commands; i++) {
        command_checked(vm, "query-status");
    }
    DRIVER->shutdown(vm);
    return NULL;
}

/* 16 machines, one thread each: launch, 100 commands, shut down. */
static void metric_vm16(int n, double *s) {
    int r, i;
    for (r = 0; r < n; r++) {
        pthread_t t[16];
        struct worker w = {100, 0, NULL, NULL, NULL};
        double start = now_us();
        for (i = 0; i < 16; i++) {
            if (pthread_create(&t[i], NULL, run_vm, &w) != 0) {
                die("pthread_create");
            }
        }
        for (i = 0; i < 16; i++) {
            pthread_join(t[i], NULL);
        }
        s[r] = now_us() - start;
    }
}

static void *launch_some(void *arg) {
    struct worker *w = arg;
    int i;
    for (i = 0; i < w->count; i++) {
        w->vms[i] = DRIVER->launch();
    }
    return NULL;
}

static void *shutdown_some(void *arg) {
    struct worker *w = arg;
    int i;
    for (i = 0; i < w->count; i++) {
        DRIVER->shutdown(w->vms[i]);
    }
    return NULL;
}

/* 64 machines up at once (launched and shut down by 8 threads); reports
 * the library's threads per machine while all 64 run. */
static void metric_vm64(int n, double *s) {
    enum { VMS = 64, WORKERS = 8 };
    struct vm *vms[VMS];
    int r, i;
    for (r = 0; r < n; r++) {
        pthread_t t[WORKERS];
        struct worker w[WORKERS];
        long before = threads_now();
        double start = now_us();
        for (i = 0; i < WORKERS; i++) {
            w[i].commands = 0;
            w[i].count = VMS / WORKERS;
            w[i].vms = vms + i * (VMS / WORKERS);
            pthread_create(&t[i], NULL, launch_some, &w[i]);
        }
        for (i = 0; i < WORKERS; i++) {
            pthread_join(t[i], NULL);
        }
        THREADS_PER_VM = (double)(threads_now() - before) / VMS;
        for (i = 0; i < VMS; i++) {
            command_checked(vms[i], "query-status");
        }
        for (i = 0; i < WORKERS; i++) {
            pthread_create(&t[i], NULL, shutdown_some, &w[i]);
        }
        for (i = 0; i < WORKERS; i++) {
            pthread_join(t[i], NULL);
        }
        s[r] = now_us() - start;
    }
}

/* One of the 16 threads of vm256: launch its 16 machines, wait until all
 * 256 are up (and counted), 100 commands on each of its machines in turn,
 * shut them down. */
static void *vm256_worker(void *arg) {
    struct worker *w = arg;
    int c, i;
    for (i = 0; i < w->count; i++) {
        w->vms[i] = DRIVER->launch();
    }
    pthread_barrier_wait(w->up);
    pthread_barrier_wait(w->counted);
    for (c = 0; c < w->commands; c++) {
        for (i = 0; i < w->count; i++) {
            command_checked(w->vms[i], "query-status");
        }
    }
    for (i = 0; i < w->count; i++) {
        DRIVER->shutdown(w->vms[i]);
    }
    return NULL;
}

/* 256 machines up at once, 100 commands each, from 16 threads (16
 * machines each), all shut down. While all 256 run, counts the threads
 * and descriptors the contender holds per machine (its 16 workers and
 * whatever it held before excepted). */
static void metric_vm256(int n, double *s) {
    enum { VMS = 256, WORKERS = 16 };
    static struct vm *vms[VMS];
    int r, i;
    for (r = 0; r < n; r++) {
        pthread_t t[WORKERS];
        struct worker w[WORKERS];
        pthread_barrier_t up, counted;
        long threads_before = threads_now(), fds_before = fds_now();
        double start = now_us();
        pthread_barrier_init(&up, NULL, WORKERS + 1);
        pthread_barrier_init(&counted, NULL, WORKERS + 1);
        for (i = 0; i < WORKERS; i++) {
            w[i].commands = 100;
            w[i].count = VMS / WORKERS;
            w[i].vms = vms + i * (VMS / WORKERS);
            w[i].up = &up;
            w[i].counted = &counted;
            if (pthread_create(&t[i], NULL, vm256_worker, &w[i]) != 0) {
                die("pthread_create");
            }
        }
        pthread_barrier_wait(&up);
        THREADS_PER_VM = (double)(threads_now() - threads_before - WORKERS) / VMS;
        FDS_PER_VM = (double)(fds_now() - fds_before) / VMS;
        pthread_barrier_wait(&counted);
        for (i = 0; i < WORKERS; i++) {
            pthread_join(t[i], NULL);
        }
        s[r] = now_us() - start;
        pthread_barrier_destroy(&up);
        pthread_barrier_destroy(&counted);
    }
}

/* As many descriptors as the hard limit allows (256 machines at once). */
static void raise_nofile(void) {
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

static int bench_main(const struct driver *driver, int argc, char **argv) {
    const char *metric;
    int n;
    double *samples;
    DRIVER = driver;
    if (argc != 3) {
        fprintf(stderr, "usage: %s cycle|rtt|schema|stop|vm16|vm64|vm256|wire|readyGIB,... N\n",
                argv[0]);
        return 2;
    }
    raise_nofile();
    metric = argv[1];
    n = atoi(argv[2]);
    samples = calloc((size_t)(n > 0 ? n : 1), sizeof *samples);
    if (strcmp(metric, "cycle") == 0) {
        metric_cycle(n, samples);
    } else if (strcmp(metric, "rtt") == 0) {
        metric_rtt(n, samples);
    } else if (strcmp(metric, "schema") == 0) {
        metric_schema(n, samples);
    } else if (strcmp(metric, "stop") == 0) {
        metric_stop_event(n, samples);
    } else if (strcmp(metric, "vm16") == 0) {
        metric_vm16(n, samples);
    } else if (strcmp(metric, "vm64") == 0) {
        metric_vm64(n, samples);
    } else if (strcmp(metric, "vm256") == 0) {
        metric_vm256(n, samples);
    } else if (strcmp(metric, "wire") == 0) {
        metric_wire(n);
        n = 0;
    } else if (strncmp(metric, "ready", 5) == 0 && metric[5] >= '0' && metric[5] <= '9') {
        metric_ready(metric + 5, n);
        n = 0;
    } else if (driver->extra_metric != NULL && driver->extra_metric(metric, n)) {
        n = 0;
    } else {
        die("unknown metric %s", metric);
    }
    report(samples, n);
    free(samples);
    return 0;
}

/* The QEMU binary: $QEMU, else qemu-system-x86_64 from PATH. */
static const char *qemu_binary(void) {
    const char *q = getenv("QEMU");
    return q != NULL ? q : "qemu-system-x86_64";
}

#endif
