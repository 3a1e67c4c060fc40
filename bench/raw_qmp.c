/*
 * Contender (a): a minimal raw QMP client written for the benchmark — a
 * socketpair, fork/exec, blocking writes and blocking line reads. No
 * error recovery, no timeouts, no event queue: the practical limit.
 *
 * Each command goes out as its shortest valid text, `{"execute":"NAME"}`
 * (26 bytes for query-status): no id, no space, no newline — QEMU's JSON
 * parser completes a message at its closing brace. QEMU 7.2 reads QMP input
 * one byte per main-loop iteration, so these bytes are the round trip.
 * Replies are matched by order: commands are sequential, and the first
 * line that is not an event is the reply (events before it are kept).
 *
 * Built with -DRAW_IDS it is instead the classic client ("raw C, ids"):
 * `{"execute":"NAME","id":N}` and a newline, as most QMP clients send.
 */
#include "bench.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

struct vm {
    pid_t pid;
    int fd;
    char *buf; /* received bytes; [start, len) not yet consumed */
    size_t start, len, cap;
#ifdef RAW_IDS
    unsigned long next_id;
#endif
    /* Names of events that arrived while waiting for a reply (QEMU sends
     * STOP before the reply to `stop`), so a later wait still sees them. */
    char pending[16][48];
    int npending;
};

static char qemu_path[4096];

/* Resolve the binary in PATH once, so the child only calls execv. */
static void resolve_qemu(void) {
    const char *name = qemu_binary();
    char *path, *dir, *save = NULL;
    if (strchr(name, '/') != NULL) {
        snprintf(qemu_path, sizeof qemu_path, "%s", name);
        return;
    }
    path = strdup(getenv("PATH") != NULL ? getenv("PATH") : "/usr/bin:/bin");
    for (dir = strtok_r(path, ":", &save); dir != NULL; dir = strtok_r(NULL, ":", &save)) {
        snprintf(qemu_path, sizeof qemu_path, "%s/%s", dir, name);
        if (access(qemu_path, X_OK) == 0) {
            free(path);
            return;
        }
    }
    die("%s not found in PATH", name);
}

static void send_all(struct vm *vm, const char *data, size_t len) {
    while (len > 0) {
        ssize_t n = send(vm->fd, data, len, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            die("send: %s", strerror(errno));
        }
        data += n;
        len -= (size_t)n;
    }
}

/* The next line (NUL-terminated, without its "\r\n"), or NULL at EOF. */
static char *read_line(struct vm *vm) {
    for (;;) {
        char *nl = memchr(vm->buf + vm->start, '\n', vm->len - vm->start);
        ssize_t n;
        if (nl != NULL) {
            char *line = vm->buf + vm->start;
            *nl = '\0';
            if (nl > line && nl[-1] == '\r') {
                nl[-1] = '\0';
            }
            vm->start = (size_t)(nl - vm->buf) + 1;
            return line;
        }
        if (vm->start > 0) {
            memmove(vm->buf, vm->buf + vm->start, vm->len - vm->start);
            vm->len -= vm->start;
            vm->start = 0;
        }
        if (vm->cap - vm->len < 4096) {
            vm->cap = vm->cap * 2 + 4096;
            vm->buf = realloc(vm->buf, vm->cap);
        }
        n = read(vm->fd, vm->buf + vm->len, vm->cap - vm->len);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            return NULL;
        }
        vm->len += (size_t)n;
    }
}

static void remember_event(struct vm *vm, const char *line) {
    const char *name = strstr(line, "\"event\": \"");
    if (name != NULL && vm->npending < 16) {
        name += strlen("\"event\": \"");
        snprintf(vm->pending[vm->npending], sizeof vm->pending[0], "%.*s",
                 (int)strcspn(name, "\""), name);
        vm->npending++;
    }
}

/* QEMU writes a reply as {"return": ...} or {"error": ...} (then the
 * id, if the command had one); an event starts with its timestamp. */
static int is_reply(const char *line) {
    return strncmp(line, "{\"return\"", 9) == 0 || strncmp(line, "{\"error\"", 8) == 0;
}

/* Send a command and return its reply line (events before it remembered). */
static char *execute(struct vm *vm, const char *cmd) {
    char msg[256];
#ifdef RAW_IDS
    int len = snprintf(msg, sizeof msg, "{\"execute\":\"%s\",\"id\":%lu}\n", cmd, vm->next_id++);
#else
    int len = snprintf(msg, sizeof msg, "{\"execute\":\"%s\"}", cmd);
#endif
    send_all(vm, msg, (size_t)len);
    for (;;) {
        char *line = read_line(vm);
        if (line == NULL) {
            die("EOF waiting for the reply to %s", cmd);
        }
        if (is_reply(line)) {
            return line;
        }
        remember_event(vm, line);
    }
}

static struct vm *raw_launch(void) {
    int sv[2];
    char chardev[64];
    struct vm *vm = calloc(1, sizeof *vm);
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
        die("socketpair: %s", strerror(errno));
    }
    snprintf(chardev, sizeof chardev, "socket,id=mon,fd=%d", sv[1]);
    vm->pid = fork();
    if (vm->pid == 0) {
        char *argv[] = {qemu_path,  "-display", "none", "-vga",    "none",
                        "-nodefaults", "-machine", "none", "-accel", "tcg",
                        "-chardev", chardev,    "-mon", "chardev=mon,mode=control", NULL};
        int null = open("/dev/null", O_RDWR);
        dup2(null, 0);
        dup2(null, 1);
        dup2(null, 2);
        fcntl(sv[1], F_SETFD, 0);
        execv(qemu_path, argv);
        _exit(127);
    }
    close(sv[1]);
    vm->fd = sv[0];
    if (read_line(vm) == NULL) {
        die("no greeting");
    }
    execute(vm, "qmp_capabilities");
    return vm;
}

static char *raw_command(struct vm *vm, const char *cmd) {
    char *line = execute(vm, cmd);
    char *ret = strstr(line, "\"return\": ");
    if (ret == NULL) {
        die("%s failed: %s", cmd, line);
    }
    /* The value, without the envelope: {"return": VALUE} or, with ids,
     * {"return": VALUE, "id": N} */
    ret += strlen("\"return\": ");
    {
#ifdef RAW_IDS
        char *end = strrchr(ret, ',');
        size_t n = end != NULL ? (size_t)(end - ret) : strlen(ret);
#else
        size_t n = strlen(ret) - 1; /* the closing brace */
#endif
        char *out = malloc(n + 1);
        memcpy(out, ret, n);
        out[n] = '\0';
        return out;
    }
}

static void raw_event_wait(struct vm *vm, const char *name) {
    char needle[64];
    int i;
    for (i = 0; i < vm->npending; i++) {
        if (strcmp(vm->pending[i], name) == 0) {
            memmove(vm->pending[i], vm->pending[i + 1],
                    sizeof vm->pending[0] * (size_t)(vm->npending - i - 1));
            vm->npending--;
            return;
        }
    }
    snprintf(needle, sizeof needle, "\"event\": \"%s\"", name);
    for (;;) {
        char *line = read_line(vm);
        if (line == NULL) {
            die("EOF waiting for %s", name);
        }
        if (strstr(line, needle) != NULL) {
            return;
        }
    }
}

static void raw_shutdown(struct vm *vm) {
    int status;
    execute(vm, "quit");
    while (read_line(vm) != NULL) {
    }
    close(vm->fd);
    waitpid(vm->pid, &status, 0);
    free(vm->buf);
    free(vm);
}

static void raw_free_text(char *text) { free(text); }

#ifdef RAW_IDS
#define RAW_NAME "raw-c-ids"
#else
#define RAW_NAME "raw-c"
#endif

static const struct driver RAW = {RAW_NAME,       raw_launch,     raw_command, raw_free_text,
                                  raw_event_wait, raw_shutdown, NULL};

int main(int argc, char **argv) {
    resolve_qemu();
    return bench_main(&RAW, argc, argv);
}
