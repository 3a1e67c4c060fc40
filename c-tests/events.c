/* Events through the C API: waits by name and pattern, several filters,
 * timeouts that consume nothing, FIFO order, events after exit. */
#include "qm_test.h"

int main(void) {
    qm_machine *m = none_machine();
    char *ev = NULL;
    uint64_t dropped = 99;
    double t0;

    OK(qm_launch, m);
    OK(qm_command, m, "stop", NULL, 5000, NULL);
    OK(qm_event_wait, m, "STOP", NULL, 5000, &ev);
    CHECK(take_contains(ev, "\"STOP\""));
    OK(qm_command, m, "cont", NULL, 5000, NULL);
    OK(qm_event_wait, m, "RESUME", "{\"timestamp\": {\"seconds\": null}}", 5000, &ev);
    CHECK(take_contains(ev, "\"RESUME\""));

    /* Timeouts (poll and timed) leave the queue untouched. */
    OK(qm_command, m, "stop", NULL, 5000, NULL);
    OK(qm_command, m, "cont", NULL, 5000, NULL);
    ev = NULL;
    EXPECT_MSG(QM_ERR_TIMEOUT, "2 other events are queued", qm_event_wait, m, "DEVICE_DELETED", NULL,
               0, &ev);
    CHECK(ev == NULL);
    t0 = now_ms();
    FAILS(QM_ERR_TIMEOUT, qm_event_wait, m, "STOP", "{\"data\": {\"x\": null}}", 200, &ev);
    CHECK(now_ms() - t0 >= 199);
    OK(qm_events_take, m, &ev);
    CHECK(strstr(ev, "\"STOP\"") != NULL && strstr(ev, "\"RESUME\"") != NULL);
    CHECK(strstr(ev, "\"STOP\"") < strstr(ev, "\"RESUME\""));
    qm_string_free(ev);
    OK(qm_events_take, m, &ev);
    CHECK(strcmp(ev, "[]") == 0);
    qm_string_free(ev);

    /* Several filters; the first queued event passing any of them. */
    OK(qm_command, m, "stop", NULL, 5000, NULL);
    OK(qm_command, m, "cont", NULL, 5000, NULL);
    OK(qm_events_wait, m, "[[\"RESUME\", null], [\"SHUTDOWN\", {\"data\": {\"guest\": true}}]]",
       5000, &ev);
    CHECK(take_contains(ev, "\"RESUME\""));
    OK(qm_event_get, m, 0, &ev);
    CHECK(take_contains(ev, "\"STOP\""));
    FAILS(QM_ERR_TIMEOUT, qm_event_get, m, 0, &ev);
    OK(qm_events_dropped, m, &dropped);
    CHECK(dropped == 0);

    /* Any name (NULL) with a pattern. */
    OK(qm_command, m, "stop", NULL, 5000, NULL);
    OK(qm_event_wait, m, NULL, "{\"event\": \"STOP\"}", 5000, &ev);
    CHECK(take_contains(ev, "\"STOP\""));

    /* After shutdown: queued events stay readable, an unsatisfiable wait
     * fails at once. */
    OK(qm_shutdown, m, 10000);
    OK(qm_event_wait, m, "SHUTDOWN", "{\"data\": {\"guest\": false}}", 0, &ev);
    CHECK(take_contains(ev, "host-qmp-quit"));
    t0 = now_ms();
    FAILS(QM_ERR_DISCONNECTED, qm_event_wait, m, "STOP", NULL, -1, &ev);
    CHECK(now_ms() - t0 < 1000);

    qm_machine_free(m);
    printf("events: ok\n");
    return 0;
}
