/* Event listeners and split commands through the C API:
 *  - two listeners with different filters and the machine's own queue each
 *    get every event meant for them, in order, once, while four threads
 *    send commands and a fifth waits on a listener;
 *  - a listener sees only events after its creation, through relaunches;
 *  - qm_listener_fd is readable exactly while events are queued;
 *  - freeing a listener wakes a thread blocked on it (QM_ERR_STATE);
 *  - a listener outliving its machine gives its queued events, then
 *    QM_ERR_DISCONNECTED;
 *  - qm_command_send/qm_command_receive: pipelining, polling that keeps
 *    the ticket, consumed, unknown and foreign tickets, tickets answered
 *    with QM_ERR_DISCONNECTED when the run ends; qm_qmp_greeting;
 *    qm_machine_fd and qm_dispatch around a run.
 *
 * `listeners flood` (run without valgrind by tests/c_api.rs: it moves
 * 132000 QMP messages, which valgrind makes last minutes) fills a listener
 * past its 65536 events and checks what is dropped and counted. */
#define _GNU_SOURCE /* syscall(SYS_gettid) */
#include "qm_test.h"

#include <fcntl.h>
#include <sys/syscall.h>
#include <poll.h>
#include <pthread.h>

static int readable(int fd) {
    struct pollfd p;
    int n;
    p.fd = fd;
    p.events = POLLIN;
    p.revents = 0;
    n = poll(&p, 1, 0);
    CHECK(n >= 0);
    return n == 1 && (p.revents & POLLIN) != 0;
}

static int is_event(const char *event_json, const char *name) {
    char needle[64];
    snprintf(needle, sizeof needle, "\"event\":\"%s\"", name);
    return strstr(event_json, needle) != NULL;
}

/* QMP timestamps as microseconds. */
static long long timestamp_us(const char *event_json) {
    const char *s = strstr(event_json, "\"seconds\":");
    const char *us = strstr(event_json, "\"microseconds\":");
    CHECK(s != NULL && us != NULL);
    return atoll(s + strlen("\"seconds\":")) * 1000000LL + atoll(us + strlen("\"microseconds\":"));
}

/* STOP, RESUME, STOP, RESUME... `pairs` times, timestamps never going back. */
static void check_stop_resume(const struct json_list *events, size_t pairs) {
    size_t i;
    CHECK(events->len == 2 * pairs);
    for (i = 0; i < events->len; i++) {
        if (!is_event(events->items[i], i % 2 == 0 ? "STOP" : "RESUME")) {
            fprintf(stderr, "event %zu is %s\n", i, events->items[i]);
            exit(1);
        }
        if (i > 0) {
            CHECK(timestamp_us(events->items[i - 1]) <= timestamp_us(events->items[i]));
        }
    }
}

static struct json_list take_listener(qm_listener *l) {
    char *text = NULL;
    struct json_list list;
    OK(qm_listener_take, l, &text);
    list = json_split(text);
    qm_string_free(text);
    return list;
}

static struct json_list take_machine_queue(qm_machine *m) {
    char *text = NULL;
    struct json_list list;
    OK(qm_events_take, m, &text);
    list = json_split(text);
    qm_string_free(text);
    return list;
}

/* ---- every event, in order, once, with threads around ---- */

#define PAIRS 60
#define TALKERS 4

struct talker {
    qm_machine *m;
    int failures;
};

/* query-status 100 times, every other one split into send and receive. */
static void *talk(void *arg) {
    struct talker *t = arg;
    int i;
    for (i = 0; i < 100; i++) {
        qm_error *err = NULL;
        char *out = NULL;
        uint64_t ticket = 0;
        qm_status status;
        if (i % 2 == 0) {
            status = qm_command(t->m, "query-status", NULL, 20000, &out, &err);
        } else {
            status = qm_command_send(t->m, "query-status", NULL, &ticket, &err);
            if (status == QM_OK) {
                status = qm_command_receive(t->m, ticket, 20000, &out, &err);
            }
        }
        if (status != QM_OK || strstr(out, "\"status\"") == NULL) {
            fprintf(stderr, "talker: %s: %s\n", qm_status_str((int)status),
                    err != NULL ? qm_error_message(err) : out);
            t->failures++;
        }
        qm_error_free(err);
        qm_string_free(out);
    }
    return NULL;
}

struct collector {
    qm_listener *l;
    size_t want;
    struct json_list events;
    qm_status status;
};

/* qm_listener_wait until `want` events have come. */
static void *collect(void *arg) {
    struct collector *c = arg;
    c->status = QM_OK;
    while (c->events.len < c->want && c->status == QM_OK) {
        char *event = NULL;
        c->status = qm_listener_wait(c->l, 30000, &event, NULL);
        if (c->status == QM_OK) {
            json_list_push(&c->events, event);
            qm_string_free(event);
        }
    }
    return NULL;
}

static void every_event_in_order_once(void) {
    qm_machine *m = none_machine();
    qm_listener *all = NULL, *stops = NULL;
    struct talker talkers[TALKERS];
    struct collector waiter;
    pthread_t threads[TALKERS], waiter_thread;
    struct json_list queue, stop_list;
    size_t i, k;
    uint64_t dropped = 99;

    OK(qm_launch, m);
    OK(qm_listener_new, m, NULL, &all);
    OK(qm_listener_new, m, "[[\"STOP\", null]]", &stops);

    memset(&waiter, 0, sizeof waiter);
    waiter.l = all;
    waiter.want = 2 * PAIRS;
    CHECK(pthread_create(&waiter_thread, NULL, collect, &waiter) == 0);
    for (i = 0; i < TALKERS; i++) {
        talkers[i].m = m;
        talkers[i].failures = 0;
        CHECK(pthread_create(&threads[i], NULL, talk, &talkers[i]) == 0);
    }
    for (i = 0; i < PAIRS; i++) {
        OK(qm_command, m, "stop", NULL, 20000, NULL);
        OK(qm_command, m, "cont", NULL, 20000, NULL);
    }
    for (i = 0; i < TALKERS; i++) {
        CHECK(pthread_join(threads[i], NULL) == 0);
        CHECK(talkers[i].failures == 0);
    }
    CHECK(pthread_join(waiter_thread, NULL) == 0);
    CHECK(waiter.status == QM_OK);

    /* The waiting listener: every event, in order, once. */
    check_stop_resume(&waiter.events, PAIRS);
    /* The machine's own queue: the same events, untouched by listeners. */
    queue = take_machine_queue(m);
    CHECK(queue.len == waiter.events.len);
    for (i = 0; i < queue.len; i++) {
        CHECK(strcmp(queue.items[i], waiter.events.items[i]) == 0);
    }
    /* The filtered listener: exactly the STOP events, in the same order. */
    stop_list = take_listener(stops);
    CHECK(stop_list.len == PAIRS);
    for (i = 0, k = 0; i < waiter.events.len; i++) {
        if (is_event(waiter.events.items[i], "STOP")) {
            CHECK(strcmp(stop_list.items[k++], waiter.events.items[i]) == 0);
        }
    }
    CHECK(k == PAIRS);
    /* Nothing left anywhere, nothing dropped. */
    FAILS(QM_ERR_TIMEOUT, qm_listener_wait, all, 0, NULL);
    FAILS(QM_ERR_TIMEOUT, qm_listener_wait, stops, 0, NULL);
    OK(qm_listener_dropped, all, &dropped);
    CHECK(dropped == 0);
    OK(qm_listener_dropped, stops, &dropped);
    CHECK(dropped == 0);

    json_list_free(&waiter.events);
    json_list_free(&queue);
    json_list_free(&stop_list);
    qm_listener_free(stops);
    qm_listener_free(all);
    OK(qm_shutdown, m, 10000);
    qm_machine_free(m);
}

/* ---- a listener's lifetime: from its creation, through relaunches ---- */

static void only_events_after_creation_and_across_launches(void) {
    qm_machine *m = none_machine();
    qm_listener *early = NULL, *late = NULL;
    struct json_list seen;
    char *event = NULL;

    /* Made before the first launch. */
    OK(qm_listener_new, m, NULL, &early);
    CHECK(qm_listener_fd(early) >= 0);
    CHECK(!readable(qm_listener_fd(early)));
    EXPECT_MSG(QM_ERR_STATE, "not been launched", qm_listener_wait, early, 0, &event);
    OK(qm_launch, m);
    OK(qm_command, m, "stop", NULL, 5000, NULL);
    OK(qm_listener_new, m, NULL, &late); /* after STOP */
    OK(qm_command, m, "cont", NULL, 5000, NULL);

    seen = take_listener(late);
    CHECK(seen.len == 1 && is_event(seen.items[0], "RESUME"));
    json_list_free(&seen);
    seen = take_listener(early);
    CHECK(seen.len == 2 && is_event(seen.items[0], "STOP") && is_event(seen.items[1], "RESUME"));
    json_list_free(&seen);

    /* The run ends: SHUTDOWN is delivered, then the listener says so. */
    OK(qm_shutdown, m, 10000);
    OK(qm_listener_wait, late, 10000, &event);
    CHECK(is_event(event, "SHUTDOWN"));
    qm_string_free(event);
    event = NULL;
    EXPECT_MSG(QM_ERR_DISCONNECTED, "exit", qm_listener_wait, late, 10000, &event);
    CHECK(event == NULL);

    /* A new run: the same listeners carry on. */
    OK(qm_launch, m);
    OK(qm_command, m, "stop", NULL, 5000, NULL);
    OK(qm_listener_wait, late, 10000, &event);
    CHECK(is_event(event, "STOP"));
    qm_string_free(event);
    seen = take_listener(early);
    CHECK(seen.len == 2 && is_event(seen.items[0], "SHUTDOWN") && is_event(seen.items[1], "STOP"));
    json_list_free(&seen);

    qm_listener_free(late);
    OK(qm_shutdown, m, 10000);
    qm_listener_free(early);
    qm_machine_free(m);
}

/* ---- the descriptor ---- */

static void fd_is_readable_exactly_while_events_are_queued(void) {
    qm_machine *m = none_machine();
    qm_listener *l = NULL;
    char *event = NULL;
    int fd;
    OK(qm_launch, m);
    OK(qm_listener_new, m, NULL, &l);
    fd = qm_listener_fd(l);
    CHECK(fd >= 0 && fd == qm_listener_fd(l));
    CHECK(!readable(fd));
    /* Neither descriptor leaks into programs this process starts. */
    CHECK((fcntl(fd, F_GETFD) & FD_CLOEXEC) != 0);
    CHECK((fcntl(qm_machine_fd(m), F_GETFD) & FD_CLOEXEC) != 0);

    /* QEMU sends STOP before its reply to `stop`: routed by then. */
    OK(qm_command, m, "stop", NULL, 5000, NULL);
    CHECK(readable(fd));
    CHECK(readable(fd)); /* polling does not consume */
    OK(qm_listener_take, l, &event);
    CHECK(take_contains(event, "\"STOP\""));
    CHECK(!readable(fd));

    /* Two queued: readable until the second is gone. */
    OK(qm_command, m, "cont", NULL, 5000, NULL);
    OK(qm_command, m, "stop", NULL, 5000, NULL);
    CHECK(readable(fd));
    OK(qm_listener_wait, l, 0, &event);
    CHECK(take_contains(event, "\"RESUME\""));
    CHECK(readable(fd));
    OK(qm_listener_wait, l, 0, &event);
    CHECK(take_contains(event, "\"STOP\""));
    CHECK(!readable(fd));
    FAILS(QM_ERR_TIMEOUT, qm_listener_wait, l, 0, &event);
    OK(qm_listener_take, l, &event);
    CHECK(strcmp(event, "[]") == 0);
    qm_string_free(event);
    CHECK(!readable(fd));

    OK(qm_shutdown, m, 10000);
    /* SHUTDOWN came with the end of the run. */
    CHECK(readable(fd));
    OK(qm_listener_take, l, &event);
    CHECK(take_contains(event, "\"SHUTDOWN\""));
    CHECK(!readable(fd));
    qm_listener_free(l);
    qm_machine_free(m);
}

/* ---- freeing a listener another thread waits on ---- */

struct blocked_wait {
    qm_listener *l;
    volatile int tid;
    qm_status status;
    char message[512];
};

static void *wait_forever(void *arg) {
    struct blocked_wait *b = arg;
    qm_error *err = NULL;
    b->tid = (int)syscall(SYS_gettid);
    b->status = qm_listener_wait(b->l, -1, NULL, &err);
    snprintf(b->message, sizeof b->message, "%s", err != NULL ? qm_error_message(err) : "");
    qm_error_free(err);
    return NULL;
}

/* Whether thread `tid` is blocked in a poll-family system call (as a wait
 * that reads the QMP socket is), by /proc/self/task/TID/syscall. */
static int in_poll(int tid) {
    char path[64], *text;
    long nr;
    snprintf(path, sizeof path, "/proc/self/task/%d/syscall", tid);
    text = read_file(path, NULL);
    if (text == NULL) {
        return 0;
    }
    nr = strtol(text, NULL, 10);
    free(text);
    return nr == SYS_poll || nr == SYS_ppoll || nr == SYS_epoll_wait || nr == SYS_epoll_pwait;
}

static void free_while_another_thread_waits(void) {
    qm_machine *m = none_machine();
    struct blocked_wait b;
    pthread_t t;
    OK(qm_launch, m);
    memset(&b, 0, sizeof b);
    b.status = QM_ERR_PANIC;
    OK(qm_listener_new, m, NULL, &b.l);
    CHECK(pthread_create(&t, NULL, wait_forever, &b) == 0);
    while (b.tid == 0) {
        sleep_ms(1);
    }
    /* Inside qm_listener_wait (a call starting after the free began would
     * be undefined behaviour): seen polling, or surely after 3 s. */
    {
        double t0 = now_ms();
        while (!in_poll(b.tid) && now_ms() - t0 < 3000) {
            sleep_ms(5);
        }
        sleep_ms(100);
    }
    qm_listener_free(b.l);
    CHECK(pthread_join(t, NULL) == 0);
    CHECK(b.status == QM_ERR_STATE);
    CHECK(strstr(b.message, "freed") != NULL);
    /* The machine does not miss it. */
    OK(qm_command, m, "stop", NULL, 5000, NULL);
    OK(qm_event_wait, m, "STOP", NULL, 5000, NULL);
    OK(qm_shutdown, m, 10000);
    qm_machine_free(m);
}

/* ---- a listener outliving its machine ---- */

static void listener_outlives_its_machine(void) {
    qm_machine *m = none_machine();
    qm_listener *l = NULL;
    char *event = NULL;
    uint64_t dropped = 99;
    OK(qm_launch, m);
    OK(qm_listener_new, m, "[[\"STOP\", null], [\"RESUME\", null]]", &l);
    OK(qm_command, m, "stop", NULL, 5000, NULL);
    OK(qm_command, m, "cont", NULL, 5000, NULL);
    qm_machine_free(m); /* kills QEMU */

    CHECK(readable(qm_listener_fd(l)));
    OK(qm_listener_wait, l, 10000, &event);
    CHECK(take_contains(event, "\"STOP\""));
    OK(qm_listener_wait, l, -1, &event);
    CHECK(take_contains(event, "\"RESUME\""));
    event = NULL;
    EXPECT_MSG(QM_ERR_DISCONNECTED, "freed", qm_listener_wait, l, -1, &event);
    CHECK(event == NULL);
    CHECK(!readable(qm_listener_fd(l)));
    OK(qm_listener_take, l, &event);
    CHECK(strcmp(event, "[]") == 0);
    qm_string_free(event);
    OK(qm_listener_dropped, l, &dropped);
    CHECK(dropped == 0);
    qm_listener_free(l);
}

/* ---- split commands ---- */

static void pipelined_commands_and_greeting(void) {
    qm_machine *m = none_machine();
    uint64_t status_ticket = 0, type_ticket = 0, bad_ticket = 0;
    char *out = NULL;

    EXPECT_MSG(QM_ERR_STATE, "not been launched", qm_qmp_greeting, m, &out);
    EXPECT_MSG(QM_ERR_STATE, "not been launched", qm_command_send, m, "query-status", NULL,
               &status_ticket);
    EXPECT_MSG(QM_ERR_STATE, "not been launched", qm_command_receive, m, 1, 0, &out);
    EXPECT_MSG(QM_ERR_STATE, "not been launched", qm_dispatch, m);
    CHECK(qm_machine_fd(m) == -1);
    CHECK(out == NULL);

    OK(qm_launch, m);
    OK(qm_qmp_greeting, m, &out);
    CHECK(strncmp(out, "{\"QMP\":", 7) == 0);
    CHECK(strstr(out, "\"version\"") != NULL && strstr(out, "\"qemu\"") != NULL);
    CHECK(strstr(out, "\"capabilities\"") != NULL);
    qm_string_free(out);
    CHECK(qm_machine_fd(m) >= 0);
    OK(qm_dispatch, m);

    /* Three in flight, received in reverse order. */
    OK(qm_command_send, m, "query-status", NULL, &status_ticket);
    OK(qm_command_send, m, "qom-get", "{\"path\": \"/machine\", \"property\": \"type\"}",
       &type_ticket);
    OK(qm_command_send, m, "no-such-command", NULL, &bad_ticket);
    CHECK(status_ticket != type_ticket && type_ticket != bad_ticket);
    OK(qm_command_receive, m, bad_ticket, 10000, &out);
    CHECK(strstr(out, "\"error\"") != NULL && strstr(out, "CommandNotFound") != NULL);
    qm_string_free(out);
    OK(qm_command_receive, m, type_ticket, 10000, &out);
    CHECK(strstr(out, "\"return\"") != NULL && strstr(out, "\"none-machine\"") != NULL);
    qm_string_free(out);
    OK(qm_command_receive, m, status_ticket, 10000, &out);
    CHECK(strstr(out, "\"return\"") != NULL && strstr(out, "\"running\"") != NULL);
    CHECK(strstr(out, "\"id\"") == NULL);
    qm_string_free(out);

    /* A received ticket is consumed; NULL discards the reply. */
    out = NULL;
    EXPECT_MSG(QM_ERR_INVALID_ARGUMENT, "not outstanding", qm_command_receive, m, status_ticket,
               0, &out);
    CHECK(out == NULL);
    OK(qm_command_send, m, "query-status", NULL, &status_ticket);
    OK(qm_command_receive, m, status_ticket, 10000, NULL);
    FAILS(QM_ERR_INVALID_ARGUMENT, qm_command_receive, m, status_ticket, 10000, NULL);
    /* Tickets never handed out. */
    EXPECT_MSG(QM_ERR_INVALID_ARGUMENT, "not outstanding", qm_command_receive, m, 0, 0, NULL);
    EXPECT_MSG(QM_ERR_INVALID_ARGUMENT, "not outstanding", qm_command_receive, m,
               status_ticket + 1000000, 0, NULL);

    /* After the run: the greeting stays, the descriptor goes. */
    OK(qm_shutdown, m, 10000);
    OK(qm_qmp_greeting, m, &out);
    CHECK(take_contains(out, "\"QMP\""));
    CHECK(qm_machine_fd(m) == -1);
    FAILS(QM_ERR_DISCONNECTED, qm_dispatch, m);
    FAILS(QM_ERR_STATE, qm_command_send, m, "query-status", NULL, &status_ticket);
    qm_machine_free(m);
}

static void polling_keeps_the_ticket(void) {
    qm_machine *m = none_machine(), *other = none_machine();
    uint64_t ticket = 0, foreign = 0;
    char *out = NULL;
    int pid;
    OK(qm_launch, m);
    OK(qm_launch, other);
    pid = qm_pid(m);

    /* QEMU stopped by a signal cannot answer: polls time out, and keep
     * the ticket. */
    CHECK(kill(pid, SIGSTOP) == 0);
    OK(qm_command_send, m, "query-status", NULL, &ticket);
    FAILS(QM_ERR_TIMEOUT, qm_command_receive, m, ticket, 0, &out);
    FAILS(QM_ERR_TIMEOUT, qm_command_receive, m, ticket, 0, &out);
    FAILS(QM_ERR_TIMEOUT, qm_command_receive, m, ticket, 100, &out);
    OK(qm_dispatch, m);
    CHECK(out == NULL);
    CHECK(kill(pid, SIGCONT) == 0);
    OK(qm_command_receive, m, ticket, 10000, &out);
    CHECK(take_contains(out, "\"running\""));

    /* A ticket of another machine is not this one's, and stays the
     * other's. */
    OK(qm_command_send, other, "query-status", NULL, &foreign);
    EXPECT_MSG(QM_ERR_INVALID_ARGUMENT, "not outstanding", qm_command_receive, m, foreign, 1000,
               &out);
    OK(qm_command_receive, other, foreign, 10000, &out);
    CHECK(take_contains(out, "\"return\""));

    OK(qm_shutdown, other, 10000);
    OK(qm_shutdown, m, 10000);
    qm_machine_free(other);
    qm_machine_free(m);
}

/* The end of a run answers every outstanding ticket: by a shutdown, by
 * qm_kill, by QEMU dying; a later launch forgets them. */
static void run_end_answers_outstanding_tickets(void) {
    qm_machine *m = none_machine();
    uint64_t t1 = 0, t2 = 0, t3 = 0;
    char *out = NULL;
    int pid;

    /* A shutdown that QEMU cannot answer (stopped): killed, tickets
     * disconnected. */
    OK(qm_launch, m);
    pid = qm_pid(m);
    CHECK(kill(pid, SIGSTOP) == 0);
    OK(qm_command_send, m, "query-status", NULL, &t1);
    OK(qm_command_send, m, "query-version", NULL, &t2);
    FAILS(QM_ERR_ABNORMAL_SHUTDOWN, qm_shutdown, m, 300);
    EXPECT_MSG(QM_ERR_DISCONNECTED, "signal 9", qm_command_receive, m, t1, 0, &out);
    EXPECT_MSG(QM_ERR_DISCONNECTED, "signal 9", qm_command_receive, m, t2, -1, &out);
    CHECK(out == NULL);
    /* Answered means consumed. */
    FAILS(QM_ERR_INVALID_ARGUMENT, qm_command_receive, m, t1, 0, &out);

    /* qm_kill. */
    OK(qm_launch, m);
    CHECK(kill(qm_pid(m), SIGSTOP) == 0);
    OK(qm_command_send, m, "query-status", NULL, &t1);
    OK(qm_kill, m);
    FAILS(QM_ERR_DISCONNECTED, qm_command_receive, m, t1, 10000, &out);

    /* QEMU killed from outside while a receive waits. */
    OK(qm_launch, m);
    pid = qm_pid(m);
    CHECK(kill(pid, SIGSTOP) == 0);
    OK(qm_command_send, m, "query-status", NULL, &t1);
    OK(qm_command_send, m, "query-status", NULL, &t3);
    CHECK(kill(pid, SIGKILL) == 0);
    EXPECT_MSG(QM_ERR_DISCONNECTED, "signal 9", qm_command_receive, m, t1, 10000, &out);
    EXPECT_MSG(QM_ERR_DISCONNECTED, "signal 9", qm_command_receive, m, t3, 0, &out);
    FAILS(QM_ERR_ABNORMAL_SHUTDOWN, qm_shutdown, m, 10000);

    /* A later launch forgets the earlier run's tickets. */
    OK(qm_launch, m);
    CHECK(kill(qm_pid(m), SIGSTOP) == 0);
    OK(qm_command_send, m, "query-status", NULL, &t2);
    CHECK(kill(qm_pid(m), SIGKILL) == 0);
    FAILS(QM_ERR_ABNORMAL_SHUTDOWN, qm_shutdown, m, 10000);
    OK(qm_launch, m);
    EXPECT_MSG(QM_ERR_INVALID_ARGUMENT, "not outstanding", qm_command_receive, m, t2, 0, &out);
    OK(qm_shutdown, m, 10000);
    qm_machine_free(m);
}

/* ---- a full listener ---- */

#define QUEUE_CAPACITY 65536
#define FLOOD_PAIRS 33000 /* 66000 events: 464 more than a queue holds */

static void flood(void) {
    qm_machine *m = none_machine();
    qm_listener *all = NULL, *stops = NULL;
    uint64_t *tickets = malloc(sizeof *tickets * 2 * FLOOD_PAIRS);
    uint64_t dropped = 99;
    const size_t over = 2 * FLOOD_PAIRS - QUEUE_CAPACITY;
    struct json_list kept, stop_list;
    size_t i;

    CHECK(tickets != NULL);
    OK(qm_launch, m);
    OK(qm_listener_new, m, NULL, &all);
    OK(qm_listener_new, m, "[[\"STOP\", null]]", &stops);
    /* Pipelined: QEMU's pace, not a round trip per command. */
    for (i = 0; i < FLOOD_PAIRS; i++) {
        OK(qm_command_send, m, "stop", NULL, &tickets[2 * i]);
        OK(qm_command_send, m, "cont", NULL, &tickets[2 * i + 1]);
    }
    for (i = 0; i < 2 * FLOOD_PAIRS; i++) {
        OK(qm_command_receive, m, tickets[i], 60000, NULL);
    }

    /* Everything beyond the capacity is dropped, oldest first, and
     * counted; the filtered listener holds all of its own. */
    OK(qm_listener_dropped, all, &dropped);
    CHECK(dropped == over);
    OK(qm_listener_dropped, stops, &dropped);
    CHECK(dropped == 0);
    OK(qm_events_dropped, m, &dropped);
    CHECK(dropped == over);
    kept = take_listener(all);
    CHECK(kept.len == QUEUE_CAPACITY);
    stop_list = take_listener(stops);
    CHECK(stop_list.len == FLOOD_PAIRS);
    /* The first kept event is the (over+1)-th: STOP number over/2. */
    CHECK(strcmp(kept.items[0], stop_list.items[over / 2]) == 0);
    for (i = 0; i < kept.len; i++) {
        CHECK(is_event(kept.items[i], i % 2 == 0 ? "STOP" : "RESUME"));
    }
    CHECK(strcmp(kept.items[kept.len - 2], stop_list.items[FLOOD_PAIRS - 1]) == 0);
    json_list_free(&kept);
    json_list_free(&stop_list);

    /* Emptied, the listener takes events again; the count stays. */
    OK(qm_command, m, "stop", NULL, 10000, NULL);
    OK(qm_listener_wait, all, 10000, NULL);
    OK(qm_listener_dropped, all, &dropped);
    CHECK(dropped == over);

    qm_listener_free(all);
    qm_listener_free(stops);
    OK(qm_shutdown, m, 30000);
    qm_machine_free(m);
    free(tickets);
}

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "flood") == 0) {
        flood();
        printf("listeners flood: ok\n");
        return 0;
    }
    every_event_in_order_once();
    only_events_after_creation_and_across_launches();
    fd_is_readable_exactly_while_events_are_queued();
    free_while_another_thread_waits();
    listener_outlives_its_machine();
    pipelined_commands_and_greeting();
    polling_keeps_the_ticket();
    run_end_answers_outstanding_tickets();
    printf("listeners: ok\n");
    return 0;
}
