/* What test harnesses need, through the C API: qm_save_artifacts (after a
 * normal run, after a failed launch, after SIGKILL, and from another
 * thread while commands flow), qm_probe, and qm_migrate (a completed
 * migration; machine types that do not match). */
#include "qm_test.h"

#include <pthread.h>

static char scratch[4096];

static void path_in(char *out, size_t size, const char *name) {
    snprintf(out, size, "%s/%s", scratch, name);
}

static int file_exists(const char *dir, const char *name) {
    char path[4200];
    struct stat st;
    snprintf(path, sizeof path, "%s/%s", dir, name);
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* ---- artifacts ---- */

/* A pc under qtest with a console (the UART written through port 0x3f8)
 * and a QMP trace: every artifact has something to hold. */
static void after_a_normal_run(void) {
    char dir[4200], trace[4200], *out = NULL;
    const char *hello = "hello from the UART\n";
    qm_machine *m = new_qtest_machine();
    struct stat st;
    size_t i;

    path_in(trace, sizeof trace, "normal-trace.log");
    path_in(dir, sizeof dir, "normal/artifacts"); /* parents created too */
    OK(qm_set_console, m, NULL, 0);
    OK(qm_set_qmp_trace, m, trace);
    EXPECT_MSG(QM_ERR_STATE, "not been launched", qm_save_artifacts, m, dir);
    OK(qm_launch, m);
    for (i = 0; hello[i] != '\0'; i++) {
        OK(qm_qtest_out, m, 0x3f8, 1, (uint8_t)hello[i]);
    }
    OK(qm_console_wait, m, "UART\n", NULL, 10000, NULL);
    OK(qm_command, m, "stop", NULL, 10000, NULL);
    OK(qm_event_wait, m, "STOP", NULL, 10000, &out); /* taken: still saved */
    qm_string_free(out);
    OK(qm_command, m, "query-status", NULL, 10000, NULL);

    /* While it runs. */
    OK(qm_save_artifacts, m, dir);
    CHECK(stat(dir, &st) == 0 && S_ISDIR(st.st_mode) && (st.st_mode & 0777) == 0700);
    CHECK(file_contains(dir, "status.txt", "running (pid"));
    CHECK(file_contains(dir, "events.jsonl", "\"STOP\""));
    CHECK(file_contains(dir, "console.log", hello));
    CHECK(file_contains(dir, "command-line.txt", "-qtest"));

    /* After the shutdown: the files are replaced. */
    OK(qm_shutdown, m, 10000);
    OK(qm_save_artifacts, m, dir);
    CHECK(file_contains(dir, "qmp-trace.log", "\"execute\":\"stop\""));
    CHECK(file_contains(dir, "qmp-trace.log", "query-status"));
    CHECK(file_contains(dir, "qmp-trace.log", " >> "));
    CHECK(file_contains(dir, "qmp-trace.log", " << "));
    CHECK(file_contains(dir, "events.jsonl", "\"STOP\""));
    CHECK(file_contains(dir, "events.jsonl", "\"SHUTDOWN\""));
    CHECK(file_contains(dir, "console.log", hello));
    CHECK(file_contains(dir, "command-line.txt", "-qtest"));
    CHECK(file_contains(dir, "command-line.txt", "clock=vm"));
    CHECK(file_contains(dir, "status.txt", "exited with status 0"));
    CHECK(file_exists(dir, "qemu.log"));
    printf("harness: artifacts of a normal run saved\n");
    qm_machine_free(m);
}

static void after_a_failed_launch(void) {
    char dir[4200];
    qm_machine *m = none_machine();
    OK(qm_add_arg, m, "-no-such-option");
    FAILS(QM_ERR_LAUNCH, qm_launch, m);
    path_in(dir, sizeof dir, "failed");
    OK(qm_save_artifacts, m, dir);
    CHECK(file_contains(dir, "qemu.log", "-no-such-option"));
    CHECK(file_contains(dir, "command-line.txt", "-no-such-option"));
    CHECK(file_contains(dir, "status.txt", "launch failed"));
    CHECK(file_contains(dir, "status.txt", "exited with status 1"));
    CHECK(!file_exists(dir, "console.log"));
    CHECK(!file_exists(dir, "qmp-trace.log"));
    qm_machine_free(m);
}

static void after_sigkill(void) {
    char dir[4200];
    qm_machine *m = none_machine();
    OK(qm_launch, m);
    OK(qm_command, m, "stop", NULL, 10000, NULL);
    CHECK(kill(qm_pid(m), SIGKILL) == 0);
    FAILS(QM_ERR_DISCONNECTED, qm_event_wait, m, "NEVER", NULL, 10000, NULL);
    path_in(dir, sizeof dir, "killed");
    OK(qm_save_artifacts, m, dir);
    CHECK(file_contains(dir, "status.txt", "signal 9"));
    CHECK(file_contains(dir, "events.jsonl", "\"STOP\""));
    CHECK(file_contains(dir, "command-line.txt", "none"));
    FAILS(QM_ERR_ABNORMAL_SHUTDOWN, qm_shutdown, m, 10000);
    /* Saving again after the clean-up: the same story. */
    OK(qm_save_artifacts, m, dir);
    CHECK(file_contains(dir, "status.txt", "signal 9"));
    qm_machine_free(m);
}

struct flow {
    qm_machine *m;
    volatile int stop;
    int commands, failures;
};

static void *commands_flow(void *arg) {
    struct flow *f = arg;
    while (!f->stop) {
        static const char *const cmds[] = {"stop", "cont", "query-status"};
        qm_error *err = NULL;
        if (qm_command(f->m, cmds[f->commands % 3], NULL, 20000, NULL, &err) != QM_OK) {
            fprintf(stderr, "flow: %s\n", qm_error_message(err));
            qm_error_free(err);
            f->failures++;
        }
        f->commands++;
    }
    return NULL;
}

static void from_another_thread_mid_run(void) {
    char dir[4200], path[4400], trace[4200], *text;
    qm_machine *m = none_machine();
    struct flow f;
    pthread_t t;
    int i;
    path_in(trace, sizeof trace, "flow-trace.log");
    OK(qm_set_qmp_trace, m, trace);
    OK(qm_launch, m);
    memset(&f, 0, sizeof f);
    f.m = m;
    CHECK(pthread_create(&t, NULL, commands_flow, &f) == 0);
    path_in(dir, sizeof dir, "mid-run");
    for (i = 0; i < 5; i++) {
        OK(qm_save_artifacts, m, dir);
        /* Whole files every time: each line of events.jsonl is an event. */
        snprintf(path, sizeof path, "%s/events.jsonl", dir);
        text = read_file(path, NULL);
        CHECK(text != NULL);
        {
            char *line = text, *end;
            while ((end = strchr(line, '\n')) != NULL) {
                CHECK(line[0] == '{' && end[-1] == '}');
                line = end + 1;
            }
            CHECK(*line == '\0');
        }
        free(text);
        CHECK(file_contains(dir, "status.txt", "running"));
        sleep_ms(20);
    }
    f.stop = 1;
    CHECK(pthread_join(t, NULL) == 0);
    CHECK(f.failures == 0 && f.commands > 0);
    OK(qm_save_artifacts, m, dir);
    CHECK(file_contains(dir, "events.jsonl", "\"STOP\""));
    CHECK(file_contains(dir, "qmp-trace.log", "\"execute\":\"cont\""));
    OK(qm_shutdown, m, 10000);
    qm_machine_free(m);
    printf("harness: saved 6 times while %d commands flowed\n", f.commands);
}

static void artifact_errors(void) {
    qm_machine *m = none_machine();
    char file[4200];
    FILE *f;
    OK(qm_launch, m);
    /* A path under a regular file cannot be a directory. */
    path_in(file, sizeof file, "a-file");
    f = fopen(file, "w");
    CHECK(f != NULL);
    fclose(f);
    strcat(file, "/sub");
    FAILS(QM_ERR_IO, qm_save_artifacts, m, file);
    OK(qm_shutdown, m, 10000);
    qm_machine_free(m);
}

/* ---- probes ---- */

static void probes(void) {
    static const struct {
        const char *what, *name;
        bool present;
    } questions[] = {
        {"machine", "pc", true},          {"machine", "nonesuch", false},
        {"machine", "q35", true},         {"device", "virtio-serial-pci", true},
        {"device", "no-such-device", false}, {"accel", "tcg", true},
        {"command", "query-status", true}, {"command", "no-such-command", false},
        {"cpu", "qemu64", true},          {"cpu", "no-such-cpu", false},
    };
    size_t i;
    bool present;
    qm_error *e;
    for (i = 0; i < sizeof questions / sizeof questions[0]; i++) {
        present = !questions[i].present;
        OK(qm_probe, qemu_binary(), questions[i].what, questions[i].name, 30000, &present);
        if (present != questions[i].present) {
            fprintf(stderr, "probe %s %s: %d\n", questions[i].what, questions[i].name, present);
            exit(1);
        }
    }
    OK(qm_probe, qemu_binary(), "machine", "pc", 0, NULL); /* cached: no QEMU, no wait */
    present = true;
    EXPECT_MSG(QM_ERR_INVALID_ARGUMENT, "unknown capability", qm_probe, qemu_binary(), "flavour",
               "x", 30000, &present);
    CHECK(present);
    e = EXPECT(QM_ERR_LAUNCH, qm_probe, "/no/such/qemu", "machine", "pc", 30000, &present);
    CHECK(strstr(qm_error_message(e), "/no/such/qemu") != NULL);
    qm_error_free(e);
    CHECK(present);
    printf("harness: %zu probes answered\n", sizeof questions / sizeof questions[0]);
}

/* ---- migration ---- */

static qm_machine *migration_machine(const char *type, int incoming) {
    qm_machine *m = NULL;
    OK(qm_machine_new, qemu_binary(), &m);
    OK(qm_set_machine_type, m, type);
    OK(qm_add_arg, m, "-accel");
    OK(qm_add_arg, m, "tcg");
    OK(qm_add_arg, m, "-m");
    OK(qm_add_arg, m, "64");
    OK(qm_add_arg, m, "-nodefaults");
    if (incoming) {
        OK(qm_add_arg, m, "-incoming");
        OK(qm_add_arg, m, "defer");
    }
    OK(qm_launch, m);
    return m;
}

static void migration(void) {
    qm_machine *src = migration_machine("pc", 0), *dst = migration_machine("pc", 1);
    char *out = NULL;
    qm_error *e;
    qm_status status;

    OK(qm_command, dst, "query-status", NULL, 10000, &out);
    CHECK(take_contains(out, "\"inmigrate\""));
    OK(qm_migrate, src, dst, 60000);
    OK(qm_command, dst, "query-status", NULL, 10000, &out);
    CHECK(take_contains(out, "\"running\""));
    OK(qm_command, src, "query-status", NULL, 10000, &out);
    CHECK(take_contains(out, "\"postmigrate\""));
    OK(qm_event_wait, dst, "MIGRATION", "{\"data\": {\"status\": \"completed\"}}", 0, NULL);
    OK(qm_shutdown, src, 10000);
    OK(qm_shutdown, dst, 10000);
    qm_machine_free(src);
    qm_machine_free(dst);
    printf("harness: pc migrated; destination running, source postmigrate\n");

    /* pc into q35: refused, both sides' state in the message. */
    src = migration_machine("pc", 0);
    dst = migration_machine("q35", 1);
    e = NULL;
    status = qm_migrate(src, dst, 60000, &e);
    CHECK(status == QM_ERR_COMMAND || status == QM_ERR_DISCONNECTED);
    CHECK(e != NULL && qm_error_status(e) == status);
    if (strstr(qm_error_message(e), "source: ") == NULL ||
        strstr(qm_error_message(e), "destination: ") == NULL) {
        fprintf(stderr, "both statuses missing: %s\n", qm_error_message(e));
        exit(1);
    }
    printf("harness: pc into q35 fails: %s\n", qm_error_message(e));
    qm_error_free(e);
    qm_shutdown(src, 10000, NULL);
    qm_shutdown(dst, 10000, NULL);
    qm_machine_free(src);
    qm_machine_free(dst);
}

static void migration_state_errors(void) {
    qm_machine *a = none_machine(), *b = none_machine();
    EXPECT_MSG(QM_ERR_STATE, "not been launched", qm_migrate, a, b, 1000);
    OK(qm_launch, a);
    FAILS(QM_ERR_STATE, qm_migrate, a, b, 1000);
    FAILS(QM_ERR_STATE, qm_migrate, b, a, 1000);
    OK(qm_shutdown, a, 10000);
    qm_machine_free(a);
    qm_machine_free(b);
}

int main(void) {
    make_scratch(scratch, sizeof scratch, "harness");
    after_a_normal_run();
    after_a_failed_launch();
    after_sigkill();
    from_another_thread_mid_run();
    artifact_errors();
    probes();
    migration();
    migration_state_errors();
    remove_tree(scratch);
    printf("harness: ok\n");
    return 0;
}
