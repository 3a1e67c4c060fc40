/* fd passing, monitor addresses, QMP off, wrappers, attaching to a QEMU
 * started elsewhere, the QMP trace, event matching — through the C API,
 * with bad input for every one of these functions. */
#include "qm_test.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>

extern char **environ;

static const char BAD_UTF8[] = {'a', (char)0xff, 0};

static char scratch[] = "/tmp/qm-c-features-XXXXXX";

static void path_in_scratch(char *out, size_t size, const char *name) {
    snprintf(out, size, "%s/%s", scratch, name);
}

static void add_fd_and_bad_input(void) {
    char path[256], *out = NULL;
    qm_machine *m = none_machine();
    int fd;
    path_in_scratch(path, sizeof path, "data");
    fd = open(path, O_CREAT | O_RDWR | O_CLOEXEC, 0600);
    CHECK(fd >= 0);
    CHECK(write(fd, "data", 4) == 4);

    EXPECT_MSG(QM_ERR_INVALID_ARGUMENT, "`fd` (-1) is not an open", qm_add_fd, m, -1, 1, "o", NULL);
    EXPECT_MSG(QM_ERR_INVALID_ARGUMENT, "`fd` (100000) is not an open", qm_add_fd, m, 100000, 1,
               "o", NULL);
    EXPECT_MSG(QM_ERR_INVALID_ARGUMENT, "`fdset` must not be negative", qm_add_fd, m, fd, -1, "o",
               NULL);
    EXPECT_MSG(QM_ERR_INVALID_ARGUMENT, "`opaque` is NULL", qm_add_fd, m, fd, 1, NULL, NULL);
    EXPECT_MSG(QM_ERR_INVALID_ARGUMENT, "`opaque` is not valid UTF-8", qm_add_fd, m, fd, 1,
               BAD_UTF8, NULL);
    EXPECT_MSG(QM_ERR_INVALID_ARGUMENT, "`opts` is not valid UTF-8", qm_add_fd, m, fd, 1, "o",
               BAD_UTF8);
    EXPECT_MSG(QM_ERR_INVALID_ARGUMENT, "`m` is NULL", qm_add_fd, NULL, fd, 1, "o", NULL);

    OK(qm_add_fd, m, fd, 1, "c-test-file", NULL);
    close(fd); /* the library holds its own copy */
    OK(qm_launch, m);
    EXPECT_MSG(QM_ERR_STATE, "launched", qm_add_fd, m, 0, 1, "o", NULL);
    OK(qm_command, m, "query-fdsets", NULL, 5000, &out);
    CHECK(take_contains(out, "\"c-test-file\""));
    OK(qm_command_line, m, &out);
    CHECK(take_contains(out, "\"-add-fd\""));
    OK(qm_shutdown, m, 10000);
    qm_machine_free(m);
}

static void send_fd_and_bad_input(void) {
    qm_machine *m = none_machine();
    int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    CHECK(fd >= 0);
    EXPECT_MSG(QM_ERR_STATE, "not been launched", qm_send_fd, m, fd, "n");
    OK(qm_launch, m);
    EXPECT_MSG(QM_ERR_INVALID_ARGUMENT, "`fd` (-1)", qm_send_fd, m, -1, "n");
    EXPECT_MSG(QM_ERR_INVALID_ARGUMENT, "`fdname` is NULL", qm_send_fd, m, fd, NULL);
    EXPECT_MSG(QM_ERR_INVALID_ARGUMENT, "`fdname` is not valid UTF-8", qm_send_fd, m, fd, BAD_UTF8);
    EXPECT_MSG(QM_ERR_INVALID_ARGUMENT, "`m` is NULL", qm_send_fd, NULL, fd, "n");
    OK(qm_send_fd, m, fd, "devnull");
    OK(qm_command, m, "closefd", "{\"fdname\": \"devnull\"}", 5000, NULL);
    EXPECT_MSG(QM_ERR_COMMAND, "devnull", qm_command, m, "closefd", "{\"fdname\": \"devnull\"}",
               5000, NULL);
    OK(qm_shutdown, m, 10000);
    close(fd);
    qm_machine_free(m);
}

static void unix_monitor(void) {
    char sock[256], longpath[300];
    qm_machine *m = none_machine();
    struct stat st;
    int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    memset(longpath, 'x', sizeof longpath - 1);
    longpath[0] = '/';
    longpath[sizeof longpath - 1] = '\0';
    EXPECT_MSG(QM_ERR_INVALID_ARGUMENT, "107", qm_set_monitor_unix, m, longpath);
    EXPECT_MSG(QM_ERR_INVALID_ARGUMENT, "`path` is NULL", qm_set_monitor_unix, m, NULL);
    EXPECT_MSG(QM_ERR_INVALID_ARGUMENT, "`path` is not valid UTF-8", qm_set_monitor_unix, m,
               BAD_UTF8);
    EXPECT_MSG(QM_ERR_INVALID_ARGUMENT, "`m` is NULL", qm_set_monitor_unix, NULL, "/tmp/x");
    path_in_scratch(sock, sizeof sock, "qmp.sock");
    OK(qm_set_monitor_unix, m, sock);
    OK(qm_launch, m);
    CHECK(stat(sock, &st) == 0 && S_ISSOCK(st.st_mode));
    OK(qm_command, m, "query-status", NULL, 5000, NULL);
    OK(qm_send_fd, m, fd, "devnull");
    OK(qm_shutdown, m, 10000);
    CHECK(stat(sock, &st) != 0);
    close(fd);
    qm_machine_free(m);
}

static int bound_port(int *listener) {
    struct sockaddr_in addr;
    socklen_t len = sizeof addr;
    int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    CHECK(s >= 0 && bind(s, (struct sockaddr *)&addr, sizeof addr) == 0 && listen(s, 1) == 0);
    CHECK(getsockname(s, (struct sockaddr *)&addr, &len) == 0);
    *listener = s;
    return ntohs(addr.sin_port);
}

static void tcp_monitor(void) {
    qm_machine *m = none_machine();
    uint16_t port = 0;
    int busy, busy_port, fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    EXPECT_MSG(QM_ERR_INVALID_ARGUMENT, "`host` is NULL", qm_set_monitor_tcp, m, NULL, 0);
    EXPECT_MSG(QM_ERR_INVALID_ARGUMENT, "non-empty", qm_set_monitor_tcp, m, "", 0);
    EXPECT_MSG(QM_ERR_INVALID_ARGUMENT, "`m` is NULL", qm_set_monitor_tcp, NULL, "127.0.0.1", 0);
    EXPECT_MSG(QM_ERR_INVALID_ARGUMENT, "`m` is NULL", qm_monitor_port, NULL, &port);
    FAILS(QM_ERR_STATE, qm_monitor_port, m, &port);
    OK(qm_set_monitor_tcp, m, "127.0.0.1", 0);
    OK(qm_launch, m);
    OK(qm_monitor_port, m, &port);
    CHECK(port > 0);
    OK(qm_command, m, "query-status", NULL, 5000, NULL);
    EXPECT_MSG(QM_ERR_ADD_DEVICE, "Unix-socket", qm_send_fd, m, fd, "x");
    OK(qm_shutdown, m, 10000);
    qm_machine_free(m);

    busy_port = bound_port(&busy);
    m = none_machine();
    OK(qm_set_monitor_tcp, m, "127.0.0.1", (uint16_t)busy_port);
    EXPECT_MSG(QM_ERR_LAUNCH, "Address already in use", qm_launch, m);
    qm_machine_free(m);
    close(busy);
    close(fd);
}

static void qmp_off_monitor_null_wrapper(void) {
    qm_machine *m = none_machine();
    char *out = NULL;
    int code = -1;
    OK(qm_set_qmp_enabled, m, false);
    OK(qm_add_monitor_null, m);
    OK(qm_add_wrapper_arg, m, "env");
    OK(qm_add_wrapper_arg, m, "QM_C_WRAPPED=1");
    OK(qm_launch, m);
    CHECK(qm_pid(m) > 0);
    EXPECT_MSG(QM_ERR_ADD_DEVICE, "QMP is disabled", qm_command, m, "query-status", NULL, 1000, NULL);
    OK(qm_command_line, m, &out);
    CHECK(strncmp(out, "[\"env\",\"QM_C_WRAPPED=1\",", 24) == 0);
    CHECK(take_contains(out, "\"-monitor\",\"null\""));
    sleep_ms(200); /* let QEMU install its SIGTERM handler */
    OK(qm_shutdown, m, 10000);
    OK(qm_exit_code, m, &code);
    CHECK(code == 0);
    qm_machine_free(m);
}

static pid_t start_external(const char *qmp) {
    char *argv[] = {(char *)qemu_binary(), "-display", "none", "-machine", "none", "-accel", "tcg",
                    "-nodefaults", "-qmp", (char *)qmp, NULL};
    pid_t pid;
    posix_spawn_file_actions_t actions;
    CHECK(posix_spawn_file_actions_init(&actions) == 0);
    CHECK(posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0) == 0);
    CHECK(posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0) == 0);
    CHECK(posix_spawnp(&pid, argv[0], &actions, NULL, argv, environ) == 0);
    posix_spawn_file_actions_destroy(&actions);
    return pid;
}

static int exit_status_of(pid_t pid) {
    int status = 0;
    CHECK(waitpid(pid, &status, 0) == pid);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static void attach(void) {
    char sock[256], addr[300], *out = NULL;
    qm_machine *m = NULL;
    qm_status s = QM_ERR_IO;
    int i, code, listener, port;
    pid_t pid;

    EXPECT_MSG(QM_ERR_INVALID_ARGUMENT, "`path` is NULL", qm_attach_unix, NULL, 1000, &m);
    EXPECT_MSG(QM_ERR_INVALID_ARGUMENT, "`out` is NULL", qm_attach_unix, "/tmp/x", 1000, NULL);
    EXPECT_MSG(QM_ERR_INVALID_ARGUMENT, "`timeout_ms`", qm_attach_unix, "/tmp/x", -2, &m);
    EXPECT_MSG(QM_ERR_IO, "cannot connect", qm_attach_unix, "/nonexistent/qmp.sock", 1000, &m);
    EXPECT_MSG(QM_ERR_INVALID_ARGUMENT, "`host` is NULL", qm_attach_tcp, NULL, 1, 1000, &m);
    EXPECT_MSG(QM_ERR_INVALID_ARGUMENT, "`out` is NULL", qm_attach_tcp, "127.0.0.1", 1, 1000, NULL);
    CHECK(m == NULL);

    path_in_scratch(sock, sizeof sock, "ext.sock");
    snprintf(addr, sizeof addr, "unix:%s,server=on,wait=off", sock);
    pid = start_external(addr);
    for (i = 0; i < 500 && s != QM_OK; i++) {
        s = qm_attach_unix(sock, 5000, &m, NULL);
        if (s != QM_OK) {
            sleep_ms(20);
        }
    }
    CHECK(s == QM_OK);
    CHECK(qm_is_running(m));
    CHECK(qm_pid(m) == -1);
    EXPECT_MSG(QM_ERR_STATE, "attached", qm_log, m, &out);
    EXPECT_MSG(QM_ERR_STATE, "cannot be killed", qm_kill, m);
    EXPECT_MSG(QM_ERR_STATE, "attached", qm_launch, m);
    EXPECT_MSG(QM_ERR_STATE, "attached", qm_add_arg, m, "-S");
    OK(qm_command, m, "stop", NULL, 5000, NULL);
    OK(qm_event_wait, m, "STOP", NULL, 5000, NULL);
    OK(qm_shutdown, m, 10000);
    CHECK(!qm_is_running(m));
    qm_machine_free(m);
    code = exit_status_of(pid);
    CHECK(code == 0);

    port = bound_port(&listener);
    close(listener);
    snprintf(addr, sizeof addr, "tcp:127.0.0.1:%d,server=on,wait=off", port);
    pid = start_external(addr);
    s = QM_ERR_IO;
    m = NULL;
    for (i = 0; i < 500 && s != QM_OK; i++) {
        s = qm_attach_tcp("127.0.0.1", (uint16_t)port, 5000, &m, NULL);
        if (s != QM_OK) {
            sleep_ms(20);
        }
    }
    CHECK(s == QM_OK);
    OK(qm_command, m, "query-status", NULL, 5000, &out);
    CHECK(take_contains(out, "\"running\""));
    OK(qm_shutdown, m, 10000);
    qm_machine_free(m);
    CHECK(exit_status_of(pid) == 0);
}

static void trace_and_match(void) {
    char trace[256], text[8192];
    qm_machine *m = none_machine();
    FILE *f;
    size_t n;
    bool matches = false;

    EXPECT_MSG(QM_ERR_INVALID_ARGUMENT, "`path` is NULL", qm_set_qmp_trace, m, NULL);
    EXPECT_MSG(QM_ERR_INVALID_ARGUMENT, "`m` is NULL", qm_set_qmp_trace, NULL, "/tmp/x");
    path_in_scratch(trace, sizeof trace, "qmp.trace");
    OK(qm_set_qmp_trace, m, trace);
    OK(qm_launch, m);
    OK(qm_command, m, "query-status", NULL, 5000, NULL);
    OK(qm_shutdown, m, 10000);
    qm_machine_free(m);
    f = fopen(trace, "r");
    CHECK(f != NULL);
    n = fread(text, 1, sizeof text - 1, f);
    text[n] = '\0';
    fclose(f);
    CHECK(strstr(text, " >> {\"execute\":\"qmp_capabilities\"}\n") != NULL);
    CHECK(strstr(text, " >> {\"execute\":\"query-status\"") != NULL);
    CHECK(strstr(text, " << {\"QMP\"") != NULL);

    OK(qm_event_match, "{\"event\": \"X\", \"data\": {\"a\": 1, \"b\": 2}}", "{\"data\": {\"b\": null}}",
       &matches);
    CHECK(matches);
    OK(qm_event_match, "{\"data\": {\"a\": 1}}", "{\"data\": {\"c\": null}}", &matches);
    CHECK(!matches);
    EXPECT_MSG(QM_ERR_INVALID_ARGUMENT, "`event_json` is NULL", qm_event_match, NULL, "{}", &matches);
    EXPECT_MSG(QM_ERR_INVALID_ARGUMENT, "`match_json` is not valid JSON", qm_event_match, "{}", "{",
               &matches);
}

int main(void) {
    CHECK(mkdtemp(scratch) != NULL);
    add_fd_and_bad_input();
    send_fd_and_bad_input();
    unix_monitor();
    tcp_monitor();
    qmp_off_monitor_null_wrapper();
    attach();
    trace_and_match();
    printf("features: ok\n");
    return 0;
}
