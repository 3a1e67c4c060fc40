/* Helpers shared by the C tests: checks that print where they failed. */
#ifndef QM_TEST_H
#define QM_TEST_H

#define _XOPEN_SOURCE 700

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include <qemu_machine.h>

#define CHECK(cond)                                                           \
    do {                                                                      \
        if (!(cond)) {                                                        \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, \
                    #cond);                                                   \
            exit(1);                                                          \
        }                                                                     \
    } while (0)

/* The error of the last OK()/EXPECT() call in the main thread. */
static qm_error *qm_test_err_;

static inline qm_error *qm_test_expect_(qm_status want, qm_status got, qm_error **errp, const char *call,
                                 const char *file, int line) {
    qm_error *err = *errp;
    *errp = NULL;
    if (got != want) {
        fprintf(stderr, "%s:%d: %s returned %d (%s), expected %d (%s)\n", file, line, call,
                (int)got, qm_status_str((int)got), (int)want, qm_status_str((int)want));
        if (err != NULL) {
            fprintf(stderr, "  message: %s\n", qm_error_message(err));
        }
        exit(1);
    }
    if (got == QM_OK) {
        if (err != NULL) {
            fprintf(stderr, "%s:%d: %s succeeded but set an error\n", file, line, call);
            exit(1);
        }
        return NULL;
    }
    if (err == NULL || qm_error_status(err) != want || qm_error_message(err) == NULL) {
        fprintf(stderr, "%s:%d: %s failed without a matching error object\n", file, line, call);
        exit(1);
    }
    return err;
}

/* OK(fn, args...): call fn(args..., &err) and require QM_OK. */
#define OK(fn, ...)                                                                         \
    ((void)qm_test_expect_(QM_OK, fn(__VA_ARGS__, &qm_test_err_), &qm_test_err_, #fn, __FILE__, \
                           __LINE__))

/* EXPECT(status, fn, args...): require `status`; returns the error object
 * (NULL for QM_OK), which the caller frees with qm_error_free(). */
#define EXPECT(status, fn, ...) \
    qm_test_expect_((status), fn(__VA_ARGS__, &qm_test_err_), &qm_test_err_, #fn, __FILE__, __LINE__)

/* FAILS(status, fn, args...): require `status`; frees the error. */
#define FAILS(status, fn, ...) qm_error_free(EXPECT(status, fn, __VA_ARGS__))

/* EXPECT_MSG(status, needle, fn, args...): require `status` and a message
 * containing `needle`; frees the error. */
#define EXPECT_MSG(status, needle, fn, ...)                                       \
    do {                                                                          \
        qm_error *e_ = EXPECT(status, fn, __VA_ARGS__);                           \
        if (strstr(qm_error_message(e_), (needle)) == NULL) {                     \
            fprintf(stderr, "%s:%d: message of %s lacks \"%s\":\n%s\n", __FILE__, \
                    __LINE__, #fn, (needle), qm_error_message(e_));               \
            exit(1);                                                              \
        }                                                                         \
        qm_error_free(e_);                                                        \
    } while (0)

static inline const char *qemu_binary(void) {
    const char *q = getenv("QM_TEST_QEMU");
    return q != NULL ? q : "qemu-system-x86_64";
}

/* A machine for `qemu-system-x86_64 -machine none -accel tcg -nodefaults`. */
static inline qm_machine *none_machine(void) {
    qm_machine *m = NULL;
    OK(qm_machine_new, qemu_binary(), &m);
    CHECK(m != NULL);
    OK(qm_set_machine_type, m, "none");
    OK(qm_add_arg, m, "-accel");
    OK(qm_add_arg, m, "tcg");
    OK(qm_add_arg, m, "-nodefaults");
    return m;
}

static inline void sleep_ms(long ms) {
    struct timespec ts;
    ts.tv_sec = ms / 1000;
    ts.tv_nsec = (ms % 1000) * 1000000L;
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static inline double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1000.0 + (double)ts.tv_nsec / 1e6;
}

/* `s` contains `needle`; frees `s`. */
static inline int take_contains(char *s, const char *needle) {
    int found = s != NULL && strstr(s, needle) != NULL;
    if (!found) {
        fprintf(stderr, "\"%s\" not found in: %s\n", needle, s != NULL ? s : "(null)");
    }
    qm_string_free(s);
    return found;
}

static inline int process_exists(int pid) {
    char path[64];
    struct stat st;
    snprintf(path, sizeof path, "/proc/%d", pid);
    return stat(path, &st) == 0;
}

#endif
