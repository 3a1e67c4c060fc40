/*
 * qemu-machine demo: boot a real Linux guest under QEMU, talk to it on the
 * serial console, through the QEMU guest agent and over QMP, then power it
 * off from inside.
 *
 *   make demo            (builds everything, fetches the guest if needed)
 *   demo GUEST_DIR       (GUEST_DIR holds vmlinux and initramfs.cpio.gz)
 *
 * Exits 0 only if every step succeeded.
 */
#define _POSIX_C_SOURCE 200809L

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <qemu_machine.h>

#define PROMPT "guest# "

static struct timespec start;

static double elapsed(void) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)(now.tv_sec - start.tv_sec) + (double)(now.tv_nsec - start.tv_nsec) / 1e9;
}

static void step(const char *fmt, ...) {
    va_list ap;
    printf("[%6.2fs] ", elapsed());
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    printf("\n");
    fflush(stdout);
}

/* Report a failed call and exit non-zero (QEMU is killed by qm_machine_free).
 * `err` is passed by address: it is read only after the call has set it. */
static void check(qm_status status, qm_error **err, const char *what, qm_machine *m) {
    if (status == QM_OK) {
        return;
    }
    fprintf(stderr, "\ndemo: %s failed: %s (%s)\n%s\n", what, qm_status_str((int)status),
            *err != NULL && qm_error_qmp_class(*err) != NULL ? qm_error_qmp_class(*err) : "",
            *err != NULL ? qm_error_message(*err) : "");
    qm_error_free(*err);
    qm_machine_free(m);
    exit(1);
}

/* Print a program's output stream (`len` bytes), each line indented and
 * labelled with the stream's name. */
static void show_stream(const char *name, const uint8_t *data, size_t len) {
    size_t i;
    int at_line_start = 1;
    for (i = 0; i < len; i++) {
        if (at_line_start) {
            printf("            | %s: ", name);
        }
        putchar(data[i]);
        at_line_start = data[i] == '\n';
    }
    if (!at_line_start) {
        putchar('\n');
    }
}

/* Run a program in the guest through the agent and show how it ended:
 * `agent$ uname -r -> exit 0, "6.1.0-..."` for a one-line answer. */
static void agent_run(qm_machine *m, const char *const *argv, const char *shown) {
    qm_exec_result *r = NULL;
    qm_error *err = NULL;
    size_t out_len = 0, err_len = 0;
    const uint8_t *out, *errors;
    check(qm_agent_exec(m, argv, NULL, 0, 30000, &r, &err), &err, shown, m);
    out = qm_exec_result_stdout(r, &out_len);
    errors = qm_exec_result_stderr(r, &err_len);
    if (err_len == 0 && out_len > 0 && memchr(out, '\n', out_len) == out + out_len - 1) {
        step("agent$ %s -> exit %d, \"%.*s\"", shown, qm_exec_result_exit_code(r),
             (int)out_len - 1, (const char *)out);
    } else {
        step("agent$ %s -> exit %d", shown, qm_exec_result_exit_code(r));
        show_stream("stdout", out, out_len);
        show_stream("stderr", errors, err_len);
    }
    qm_exec_result_free(r);
}

/* Print a command's answer: the lines between the echoed command and the
 * next prompt, without carriage returns or terminal escape sequences. */
static void show_answer(const char *output) {
    const char *p = strchr(output, '\n');
    const char *end = strstr(output, PROMPT);
    int at_line_start = 1;
    if (p == NULL) {
        return;
    }
    p++;
    if (end == NULL || end < p) {
        end = output + strlen(output);
    }
    for (; p < end; p++) {
        if (*p == '\033') { /* skip an escape sequence up to its final letter */
            while (p + 1 < end && !((p[1] >= 'A' && p[1] <= 'Z') || (p[1] >= 'a' && p[1] <= 'z'))) {
                p++;
            }
            p++;
            continue;
        }
        if (*p == '\r') {
            continue;
        }
        if (at_line_start) {
            fputs("            | ", stdout);
        }
        putchar(*p);
        at_line_start = *p == '\n';
    }
    if (!at_line_start) {
        putchar('\n');
    }
}

static void add_arg(qm_machine *m, const char *arg) {
    qm_error *err = NULL;
    check(qm_add_arg(m, arg, &err), &err, "qm_add_arg", m);
}

int main(int argc, char **argv) {
    const char *guest = argc > 1 ? argv[1] : "target/guest";
    const char *qemu = getenv("QEMU") != NULL ? getenv("QEMU") : "qemu-system-x86_64";
    char kernel[4096], initrd[4096];
    qm_machine *m = NULL;
    qm_error *err = NULL;
    char *out = NULL;
    int exit_code = -1;

    clock_gettime(CLOCK_MONOTONIC, &start);
    snprintf(kernel, sizeof kernel, "%s/vmlinux", guest);
    snprintf(initrd, sizeof initrd, "%s/initramfs.cpio.gz", guest);
    printf("qemu-machine %s demo: %s, guest from %s\n", qm_version(), qemu, guest);

    check(qm_machine_new(qemu, &m, &err), &err, "qm_machine_new", m);
    add_arg(m, "-accel");
    add_arg(m, "tcg");
    add_arg(m, "-m");
    add_arg(m, "256");
    add_arg(m, "-nodefaults");
    add_arg(m, "-no-reboot");
    add_arg(m, "-kernel");
    add_arg(m, kernel);
    add_arg(m, "-initrd");
    add_arg(m, initrd);
    add_arg(m, "-append");
    add_arg(m, "console=ttyS0 panic=-1");
    check(qm_set_console(m, NULL, 0, &err), &err, "qm_set_console", m);
    check(qm_set_agent(m, NULL, &err), &err, "qm_set_agent", m);

    step("launching QEMU (TCG, 256 MiB, serial console and guest agent on socketpairs)");
    check(qm_launch(m, &err), &err, "qm_launch", m);
    step("QEMU is up, pid %d; QMP negotiated; booting Linux", qm_pid(m));

    check(qm_console_wait(m, "QM-GUEST-READY", "Kernel panic", 60000, NULL, &err), &err,
          "waiting for the guest", m);
    step("guest init is running");
    check(qm_console_wait(m, PROMPT, NULL, 30000, NULL, &err), &err, "waiting for the shell", m);
    step("shell prompt seen");

    step("guest$ uname -a");
    check(qm_console_exec(m, "uname -a", PROMPT, NULL, 30000, &out, &err), &err, "uname -a", m);
    show_answer(out);
    qm_string_free(out);

    check(qm_agent_wait_ready(m, 60000, &err), &err, "waiting for the guest agent", m);
    step("guest agent answers (virtio-serial port org.qemu.guest_agent.0)");
    {
        static const char *const uname_r[] = {"uname", "-r", NULL};
        static const char *const fails[] = {"sh", "-c", "echo hello; echo oops >&2; exit 3", NULL};
        agent_run(m, uname_r, "uname -r");
        agent_run(m, fails, "sh -c 'echo hello; echo oops >&2; exit 3'");
    }

    step("guest$ cat /proc/cpuinfo | head");
    check(qm_console_exec(m, "cat /proc/cpuinfo | head", PROMPT, NULL, 30000, &out, &err), &err,
          "cat /proc/cpuinfo", m);
    show_answer(out);
    qm_string_free(out);

    check(qm_command(m, "query-status", NULL, 5000, &out, &err), &err, "query-status", m);
    step("QMP query-status -> %s", out);
    qm_string_free(out);
    check(qm_command(m, "query-cpus-fast", NULL, 5000, &out, &err), &err, "query-cpus-fast", m);
    step("QMP query-cpus-fast -> %s", out);
    qm_string_free(out);

    check(qm_command(m, "stop", NULL, 5000, NULL, &err), &err, "stop", m);
    check(qm_event_wait(m, "STOP", NULL, 5000, &out, &err), &err, "waiting for STOP", m);
    step("QMP stop -> event %s", out);
    qm_string_free(out);
    check(qm_command(m, "query-status", NULL, 5000, &out, &err), &err, "query-status", m);
    step("QMP query-status -> %s", out);
    qm_string_free(out);
    check(qm_command(m, "cont", NULL, 5000, NULL, &err), &err, "cont", m);
    check(qm_event_wait(m, "RESUME", NULL, 5000, &out, &err), &err, "waiting for RESUME", m);
    step("QMP cont -> event %s", out);
    qm_string_free(out);
    check(qm_console_exec(m, "echo still alive after stop/cont: $((6*7))", "alive after stop/cont: 42",
                          NULL, 30000, NULL, &err),
          &err, "guest check after cont", m);
    step("the guest answers again after cont");

    step("guest$ poweroff -f");
    check(qm_console_write(m, "poweroff -f\r", strlen("poweroff -f\r"), &err), &err, "poweroff", m);
    check(qm_wait(m, 60000, &err), &err, "waiting for QEMU to exit", m);
    check(qm_event_wait(m, "SHUTDOWN", "{\"data\": {\"guest\": true}}", 0, &out, &err), &err,
          "the guest SHUTDOWN event", m);
    step("QEMU exited; event %s", out);
    qm_string_free(out);
    check(qm_exit_code(m, &exit_code, &err), &err, "qm_exit_code", m);
    step("QEMU exit code: %d", exit_code);

    qm_machine_free(m);
    if (exit_code != 0) {
        fprintf(stderr, "demo: QEMU exited with %d\n", exit_code);
        return 1;
    }
    step("demo finished: every step succeeded");
    return 0;
}
