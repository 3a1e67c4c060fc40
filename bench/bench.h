/*
 * Shared by the C contenders of the benchmark: the metric driver, timing,
 * and the report format. A contender implements `struct driver` for its
 * way of talking to QEMU; main() here runs one metric and prints one JSON
 * object on stdout for bench/bench.py:
 *
 *   {"samples_us": [...], "peak_rss_kib": N, "threads_per_vm": X}
 *
 * Every QEMU runs `-display none -vga none -nodefaults -machine none
 * -accel tcg` (plus what the driver adds for its monitor).
 */
#ifndef QM_BENCH_H
#define QM_BENCH_H

#define _GNU_SOURCE

#include <jansson.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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
    /* Wait for the named event. */
    void (*event_wait)(struct vm *vm, const char *name);
    /* quit, wait for QEMU to exit, reap it, free everything. */
    void (*shutdown)(struct vm *vm);
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

/* Peak RSS of this program (VmHWM). Not getrusage's ru_maxrss: exec keeps
 * the maximum of the image it replaced, here the Python driver. */
static long peak_rss_kib(void) { return status_field("VmHWM:"); }

static void report(const double *samples, int n, double threads_per_vm) {
    int i;
    printf("{\"samples_us\": [");
    for (i = 0; i < n; i++) {
        printf("%s%.3f", i ? ", " : "", samples[i]);
    }
    printf("], \"peak_rss_kib\": %ld, \"threads_per_vm\": %.3f}\n", peak_rss_kib(), threads_per_vm);
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
        struct worker w = {100, 0, NULL};
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
static double metric_vm64(int n, double *s) {
    enum { VMS = 64, WORKERS = 8 };
    struct vm *vms[VMS];
    double per_vm = 0;
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
        per_vm = (double)(threads_now() - before) / VMS;
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
    return per_vm;
}

static int bench_main(const struct driver *driver, int argc, char **argv) {
    const char *metric;
    int n;
    double *samples, threads_per_vm = 0;
    DRIVER = driver;
    if (argc != 3) {
        fprintf(stderr, "usage: %s cycle|rtt|schema|stop|vm16|vm64 N\n", argv[0]);
        return 2;
    }
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
        threads_per_vm = metric_vm64(n, samples);
    } else {
        die("unknown metric %s", metric);
    }
    report(samples, n, threads_per_vm);
    free(samples);
    return 0;
}

/* The QEMU binary: $QEMU, else qemu-system-x86_64 from PATH. */
static const char *qemu_binary(void) {
    const char *q = getenv("QEMU");
    return q != NULL ? q : "qemu-system-x86_64";
}

#endif
