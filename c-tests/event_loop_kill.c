/* An epoll loop (as examples/event_loop.c) driving 4 machines, two of
 * which are SIGKILLed mid-loop with commands outstanding and an event
 * queued: their QMP descriptor fires, qm_dispatch, every ticket and the
 * listener end with QM_ERR_DISCONNECTED (the listener after giving its
 * queued event) within 1 s of the kill, and the loop carries on with the
 * other two to the end of their script. */
#include "qm_test.h"

#include <poll.h>
#include <sys/epoll.h>

#define MACHINES 4
#define ROUNDS 12   /* commands per surviving machine */
#define KILL_AT 4   /* victims die after this many answered commands */
#define OUTSTANDING 3

struct vm {
    qm_machine *m;
    qm_listener *events;
    int victim;
    int qmp_fd;
    uint64_t tickets[OUTSTANDING]; /* [0]: the command in flight (0: none);
                                      a victim's outstanding ones at its end */
    int answered, events_seen;
    int ended;        /* all of it over (victim) or the script done */
    double killed_at; /* ms; 0 before the kill */
};

static const char *command_for(int n) {
    return n % 2 == 0 ? "stop" : "cont";
}

/* Victim, when its QMP descriptor fires: qm_dispatch, every outstanding
 * ticket and the listener say QM_ERR_DISCONNECTED (the listener first
 * gives the event it held). Returns 0 while the end is not seen yet. */
static int end_of_victim(struct vm *vm, int id) {
    qm_error *err = NULL;
    char *event = NULL;
    qm_status status = qm_dispatch(vm->m, &err);
    int i;
    if (status == QM_OK) {
        return 0;
    }
    CHECK(status == QM_ERR_DISCONNECTED);
    CHECK(strstr(qm_error_message(err), "signal 9") != NULL);
    qm_error_free(err);
    for (i = 0; i < OUTSTANDING; i++) {
        EXPECT_MSG(QM_ERR_DISCONNECTED, "signal 9", qm_command_receive, vm->m, vm->tickets[i], 0,
                   NULL);
    }
    OK(qm_listener_wait, vm->events, 0, &event);
    CHECK(take_contains(event, "\"STOP\""));
    EXPECT_MSG(QM_ERR_DISCONNECTED, "signal 9", qm_listener_wait, vm->events, -1, NULL);
    CHECK(!qm_is_running(vm->m));
    /* The descriptor stays readable for good (until the next launch). */
    {
        struct pollfd p;
        memset(&p, 0, sizeof p);
        p.fd = vm->qmp_fd;
        p.events = POLLIN;
        CHECK(poll(&p, 1, 0) == 1);
    }
    vm->ended = 1;
    printf("vm%d: disconnected everywhere %.0f ms after SIGKILL\n", id, now_ms() - vm->killed_at);
    CHECK(now_ms() - vm->killed_at < 1000);
    return 1;
}

/* Leave exactly one STOP queued in the listener, stop QEMU (so nothing is
 * answered any more), send commands, then SIGKILL it. */
static void kill_victim(struct vm *vm, int ep) {
    int pid = qm_pid(vm->m), i;
    char *events = NULL;
    OK(qm_listener_take, vm->events, &events);
    qm_string_free(events);
    OK(qm_command, vm->m, "stop", NULL, 10000, NULL);
    /* From now on only the QMP descriptor wakes the loop for it. */
    CHECK(epoll_ctl(ep, EPOLL_CTL_DEL, qm_listener_fd(vm->events), NULL) == 0);
    CHECK(kill(pid, SIGSTOP) == 0);
    for (i = 0; i < OUTSTANDING; i++) {
        OK(qm_command_send, vm->m, "query-status", NULL, &vm->tickets[i]);
    }
    vm->killed_at = now_ms();
    CHECK(kill(pid, SIGKILL) == 0);
}

/* Route, take events, collect the reply in flight: never blocks. */
static void advance(struct vm *vm) {
    qm_error *err = NULL;
    char *text = NULL;
    struct json_list events;
    qm_status status;
    OK(qm_dispatch, vm->m);
    OK(qm_listener_take, vm->events, &text);
    events = json_split(text);
    vm->events_seen += (int)events.len;
    json_list_free(&events);
    qm_string_free(text);
    if (vm->tickets[0] == 0) {
        return;
    }
    status = qm_command_receive(vm->m, vm->tickets[0], 0, NULL, &err);
    if (status == QM_ERR_TIMEOUT) {
        qm_error_free(err);
        return;
    }
    CHECK(status == QM_OK && err == NULL);
    vm->tickets[0] = 0;
    vm->answered++;
}

int main(void) {
    struct vm vms[MACHINES];
    int ep = epoll_create1(EPOLL_CLOEXEC), i, running = MACHINES, killed = 0;
    CHECK(ep >= 0);
    memset(vms, 0, sizeof vms);
    for (i = 0; i < MACHINES; i++) {
        struct epoll_event watch;
        memset(&watch, 0, sizeof watch);
        watch.events = EPOLLIN;
        watch.data.u32 = (uint32_t)i;
        vms[i].m = none_machine();
        vms[i].victim = i % 2 == 0;
        OK(qm_launch, vms[i].m);
        OK(qm_listener_new, vms[i].m, NULL, &vms[i].events);
        vms[i].qmp_fd = qm_machine_fd(vms[i].m);
        CHECK(epoll_ctl(ep, EPOLL_CTL_ADD, vms[i].qmp_fd, &watch) == 0);
        CHECK(epoll_ctl(ep, EPOLL_CTL_ADD, qm_listener_fd(vms[i].events), &watch) == 0);
        OK(qm_command_send, vms[i].m, command_for(0), NULL, &vms[i].tickets[0]);
    }
    while (running > 0) {
        struct epoll_event ready[2 * MACHINES];
        int n = epoll_wait(ep, ready, 2 * MACHINES, 10000), k;
        CHECK(n > 0); /* else: no progress for 10 s */
        for (k = 0; k < n; k++) {
            int id = (int)ready[k].data.u32;
            struct vm *vm = &vms[id];
            if (vm->ended) {
                continue;
            }
            if (vm->killed_at > 0) {
                running -= end_of_victim(vm, id);
                continue;
            }
            advance(vm);
            if (vm->tickets[0] != 0) {
                continue; /* still in flight */
            }
            if (vm->victim && vm->answered == KILL_AT) {
                kill_victim(vm, ep);
                killed++;
            } else if (vm->answered < ROUNDS) {
                OK(qm_command_send, vm->m, command_for(vm->answered), NULL, &vm->tickets[0]);
            } else if (vm->events_seen == ROUNDS) {
                vm->ended = 1;
                running--;
            }
        }
    }
    CHECK(killed == MACHINES / 2);
    for (i = 0; i < MACHINES; i++) {
        qm_error *err = NULL;
        qm_status status = qm_shutdown(vms[i].m, 10000, &err);
        CHECK(status == (vms[i].victim ? QM_ERR_ABNORMAL_SHUTDOWN : QM_OK));
        qm_error_free(err);
        qm_listener_free(vms[i].events);
        qm_machine_free(vms[i].m);
    }
    printf("event_loop_kill: ok\n");
    return 0;
}
