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

/* A list of JSON texts split out of a JSON array. */
struct json_list {
    char **items;
    size_t len;
};

/* Split the JSON array `array` into its elements' texts (NULL: an empty
 * list), which must be objects or arrays; strings inside them may hold
 * brackets and escapes. Free with json_list_free(). */
static inline struct json_list json_split(const char *array) {
    struct json_list list = {NULL, 0};
    const char *p = array, *start = NULL;
    int depth = 0, in_string = 0;
    if (array == NULL) {
        return list;
    }
    while (*p == ' ' || *p == '\n') p++;
    CHECK(*p == '[');
    for (p++; *p != '\0'; p++) {
        if (in_string) {
            if (*p == '\\' && p[1] != '\0') {
                p++;
            } else if (*p == '"') {
                in_string = 0;
            }
            continue;
        }
        if (*p == '"') {
            in_string = 1;
        } else if (*p == '{' || *p == '[') {
            if (depth++ == 0) start = p;
        } else if (*p == '}' || *p == ']') {
            if (depth == 0) break; /* the array's own end */
            if (--depth == 0) {
                size_t n = (size_t)(p - start) + 1;
                char *item = malloc(n + 1);
                CHECK(item != NULL);
                memcpy(item, start, n);
                item[n] = '\0';
                list.items = realloc(list.items, (list.len + 1) * sizeof *list.items);
                CHECK(list.items != NULL);
                list.items[list.len++] = item;
            }
        }
    }
    return list;
}

static inline void json_list_free(struct json_list *list) {
    size_t i;
    for (i = 0; i < list->len; i++) free(list->items[i]);
    free(list->items);
    list->items = NULL;
    list->len = 0;
}

/* Append a copy of `text` to `list`. */
static inline void json_list_push(struct json_list *list, const char *text) {
    size_t n = strlen(text);
    char *item = malloc(n + 1);
    CHECK(item != NULL);
    memcpy(item, text, n + 1);
    list->items = realloc(list->items, (list->len + 1) * sizeof *list->items);
    CHECK(list->items != NULL);
    list->items[list->len++] = item;
}

/* The whole content of the file at `path` (NUL-terminated; `*len`, if not
 * NULL, gets its length), or NULL if it cannot be read. free() it. */
static inline char *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    size_t n = 0, cap = 0, got;
    if (f == NULL) {
        return NULL;
    }
    do {
        if (n + 4096 + 1 > cap) {
            cap = (n + 4096 + 1) * 2;
            buf = realloc(buf, cap);
            CHECK(buf != NULL);
        }
        got = fread(buf + n, 1, 4096, f);
        n += got;
    } while (got > 0);
    fclose(f);
    buf[n] = '\0';
    if (len != NULL) {
        *len = n;
    }
    return buf;
}

/* The file `dir`/`name` contains `needle`. */
static inline int file_contains(const char *dir, const char *name, const char *needle) {
    char path[4096];
    char *text;
    int found;
    snprintf(path, sizeof path, "%s/%s", dir, name);
    text = read_file(path, NULL);
    found = text != NULL && strstr(text, needle) != NULL;
    if (!found) {
        fprintf(stderr, "\"%s\" not found in %s: %s\n", needle, path,
                text != NULL ? text : "(cannot read the file)");
    }
    free(text);
    return found;
}

/* A directory of environment variable `name`, required (no skipping). */
static inline const char *required_env(const char *name) {
    const char *value = getenv(name);
    if (value == NULL || value[0] == '\0') {
        fprintf(stderr, "%s is not set: run this test through `cargo test --test c_api`\n", name);
        exit(1);
    }
    return value;
}

/* The guest's kernel and initrd with a console on ttyS0, as
 * tests/common guest_config(): `-accel tcg -m 256 -nodefaults -no-reboot`. */
static inline qm_machine *new_guest_machine(void) {
    const char *dir = required_env("QM_TEST_GUEST_DIR");
    char kernel[4096], initrd[4096];
    qm_machine *m = NULL;
    snprintf(kernel, sizeof kernel, "%s/vmlinux", dir);
    snprintf(initrd, sizeof initrd, "%s/initramfs.cpio.gz", dir);
    OK(qm_machine_new, qemu_binary(), &m);
    OK(qm_add_arg, m, "-accel");
    OK(qm_add_arg, m, "tcg");
    OK(qm_add_arg, m, "-m");
    OK(qm_add_arg, m, "256");
    OK(qm_add_arg, m, "-nodefaults");
    OK(qm_add_arg, m, "-no-reboot");
    OK(qm_add_arg, m, "-kernel");
    OK(qm_add_arg, m, kernel);
    OK(qm_add_arg, m, "-initrd");
    OK(qm_add_arg, m, initrd);
    OK(qm_add_arg, m, "-append");
    OK(qm_add_arg, m, "console=ttyS0 panic=-1");
    OK(qm_set_console, m, NULL, 0);
    return m;
}

/* A `-machine pc` QEMU under qtest with the accelerator module from
 * QM_TEST_QTEST_ACCEL_DIR and the RTC on the virtual clock, as
 * tests/common qtest_config(). */
static inline qm_machine *new_qtest_machine(void) {
    qm_machine *m = NULL;
    OK(qm_machine_new, qemu_binary(), &m);
    OK(qm_set_machine_type, m, "pc");
    OK(qm_add_arg, m, "-nodefaults");
    OK(qm_add_arg, m, "-rtc");
    OK(qm_add_arg, m, "clock=vm");
    OK(qm_set_qtest, m);
    OK(qm_set_env, m, "QEMU_MODULE_DIR", required_env("QM_TEST_QTEST_ACCEL_DIR"));
    return m;
}

/* A directory made for this test under /tmp; the caller removes it with
 * remove_tree(). */
static inline void make_scratch(char *dir, size_t size, const char *tag) {
    snprintf(dir, size, "/tmp/qm-c-%s-XXXXXX", tag);
    CHECK(mkdtemp(dir) != NULL);
}

/* rm -rf `dir` (files one level deep and the directory: what the tests
 * create). */
static inline void remove_tree(const char *dir) {
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    CHECK(system(cmd) == 0);
}

#endif
