/*
 * One epoll loop drives 8 QEMUs at once, without threads. Each machine
 * runs a little script of QMP commands, one in flight at a time, sent with
 * qm_command_send() and collected with qm_command_receive(..., 0), which
 * never blocks. Its QMP descriptor (qm_machine_fd) and its listener's
 * descriptor (qm_listener_fd) are in the epoll set; when either is
 * readable, qm_dispatch() routes what came in.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>

#include <qemu_machine.h>

#define MACHINES 8

static const char *const script[] = {"stop", "query-status", "cont", "query-status"};
#define STEPS (sizeof script / sizeof script[0])
#define EVENTS 2 /* STOP and RESUME */

struct vm {
    qm_machine *m;
    qm_listener *events;
    uint64_t ticket; /* the command in flight */
    size_t step;     /* index into script */
    int events_seen;
    int done;
};

/* Exit with the error of a failed call. */
static void check(qm_status status, qm_error **err, const char *what) {
    if (status != QM_OK) {
        fprintf(stderr, "%s: %s\n", what, qm_error_message(*err));
        exit(1);
    }
}

static void start(struct vm *vm, const char *qemu) {
    const char *args[] = {"-accel", "tcg", "-nodefaults"};
    qm_error *err = NULL;
    check(qm_machine_new(qemu, &vm->m, &err), &err, "qm_machine_new");
    check(qm_set_machine_type(vm->m, "none", &err), &err, "qm_set_machine_type");
    for (size_t i = 0; i < sizeof args / sizeof args[0]; i++) {
        check(qm_add_arg(vm->m, args[i], &err), &err, "qm_add_arg");
    }
    check(qm_launch(vm->m, &err), &err, "qm_launch");
    check(qm_listener_new(vm->m, NULL, &vm->events, &err), &err, "qm_listener_new");
    check(qm_command_send(vm->m, script[0], NULL, &vm->ticket, &err), &err, "qm_command_send");
}

/* Route the machine's input, take its events, collect its reply and send
 * the next command: nothing here blocks. Returns 1 once the machine is done. */
static int advance(struct vm *vm, int id) {
    qm_error *err = NULL;
    char *text = NULL;
    qm_status status;

    check(qm_dispatch(vm->m, &err), &err, "qm_dispatch");
    check(qm_listener_take(vm->events, &text, &err), &err, "qm_listener_take");
    for (const char *e = strstr(text, "\"event\""); e != NULL; e = strstr(e + 1, "\"event\"")) {
        vm->events_seen++;
    }
    if (strcmp(text, "[]") != 0) {
        printf("vm%d  event  %s\n", id, text);
    }
    qm_string_free(text);

    if (vm->step < STEPS) {
        status = qm_command_receive(vm->m, vm->ticket, 0, &text, &err);
        if (status == QM_ERR_TIMEOUT) { /* not answered yet */
            qm_error_free(err);
            return 0;
        }
        check(status, &err, "qm_command_receive");
        printf("vm%d  %-12s -> %s\n", id, script[vm->step], text);
        qm_string_free(text);
        if (++vm->step < STEPS) {
            check(qm_command_send(vm->m, script[vm->step], NULL, &vm->ticket, &err), &err,
                  "qm_command_send");
        }
    }
    return vm->step == STEPS && vm->events_seen == EVENTS;
}

int main(void) {
    const char *qemu = getenv("QEMU") != NULL ? getenv("QEMU") : "qemu-system-x86_64";
    struct vm vms[MACHINES] = {0};
    int ep = epoll_create1(EPOLL_CLOEXEC), running = MACHINES, answered = 0, events = 0;

    for (int i = 0; i < MACHINES; i++) {
        struct epoll_event watch = {.events = EPOLLIN, .data.u32 = (uint32_t)i};
        start(&vms[i], qemu);
        if (epoll_ctl(ep, EPOLL_CTL_ADD, qm_machine_fd(vms[i].m), &watch) != 0 ||
            epoll_ctl(ep, EPOLL_CTL_ADD, qm_listener_fd(vms[i].events), &watch) != 0) {
            perror("epoll_ctl");
            return 1;
        }
    }
    while (running > 0) {
        struct epoll_event ready[2 * MACHINES];
        int n = epoll_wait(ep, ready, 2 * MACHINES, 10000);
        if (n <= 0) {
            fprintf(stderr, "no progress for 10 s\n");
            return 1;
        }
        for (int k = 0; k < n; k++) {
            struct vm *vm = &vms[ready[k].data.u32];
            if (!vm->done && advance(vm, (int)ready[k].data.u32)) {
                vm->done = 1;
                running--;
            }
        }
    }

    for (int i = 0; i < MACHINES; i++) {
        qm_error *err = NULL;
        answered += (int)vms[i].step;
        events += vms[i].events_seen;
        qm_listener_free(vms[i].events);
        check(qm_shutdown(vms[i].m, 10000, &err), &err, "qm_shutdown");
        qm_machine_free(vms[i].m);
    }
    printf("%d machines: %d commands answered, %d events delivered\n", MACHINES, answered, events);
    return 0;
}
