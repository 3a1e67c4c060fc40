/* The guest agent through the C API, against the real test guest running
 * Debian's qemu-ga (QM_TEST_GUEST_DIR), on both channel types: a
 * virtio-serial port (qm_set_agent NULL) and one more ISA serial port
 * ("isa-serial"), one boot each, the same checks on both (the ISA port is
 * slow: QEMU paces it at its baud rate, so it moves a smaller file).
 *
 * `agent truncation` (run without valgrind by tests/c_api.rs: decoding
 * 22 MB of base64 under valgrind takes a minute) boots once more to
 * check that output beyond the agent's 16 MiB is cut and flagged. */
#include "qm_test.h"

#define AGENT_MS 60000

/* The kernel release the guest runs, from the package name the guest was
 * built from ("linux-image-6.1.0-NN-amd64"). */
static void kernel_release(char *out, size_t size) {
    char path[4096], *text;
    size_t n;
    snprintf(path, sizeof path, "%s/kernel-package", required_env("QM_TEST_GUEST_DIR"));
    text = read_file(path, NULL);
    CHECK(text != NULL && strncmp(text, "linux-image-", 12) == 0);
    snprintf(out, size, "%s", text + 12);
    n = strlen(out);
    while (n > 0 && (out[n - 1] == '\n' || out[n - 1] == ' ')) out[--n] = '\0';
    free(text);
}

static qm_machine *boot_with_agent(const char *device_type) {
    qm_machine *m = new_guest_machine();
    OK(qm_set_agent, m, device_type);
    OK(qm_launch, m);
    EXPECT_MSG(QM_ERR_STATE, "launched", qm_set_agent, m, NULL);
    OK(qm_console_wait, m, "QM-GUEST-READY", "Kernel panic", 60000, NULL);
    OK(qm_agent_wait_ready, m, AGENT_MS);
    OK(qm_agent_wait_ready, m, AGENT_MS); /* again: already in sync */
    return m;
}

/* Run argv in the guest; the result, which the caller frees. */
static qm_exec_result *run(qm_machine *m, const char *const *argv, const uint8_t *input,
                           size_t input_len) {
    qm_exec_result *r = NULL;
    OK(qm_agent_exec, m, argv, input, input_len, AGENT_MS, &r);
    CHECK(r != NULL);
    return r;
}

/* The stream is exactly `want` (`want_len` bytes) and NUL-terminated. */
static int stream_is(const uint8_t *data, size_t len, const void *want, size_t want_len) {
    if (data == NULL || len != want_len || memcmp(data, want, len) != 0 || data[len] != 0) {
        fprintf(stderr, "stream of %zu bytes differs from the %zu expected: %.*s\n", len,
                want_len, data != NULL ? (int)len : 0, data != NULL ? (const char *)data : "");
        return 0;
    }
    return 1;
}

static void exec_checks(qm_machine *m) {
    static const char *const uname_r[] = {"uname", "-r", NULL};
    static const char *const split[] = {"sh", "-c", "echo out; echo err >&2; exit 3", NULL};
    static const char *const killed[] = {"sh", "-c", "kill -9 $$", NULL};
    static const char *const cat[] = {"cat", NULL};
    static const char *const missing[] = {"/no/such/program", NULL};
    static const uint8_t input[] = {'a', 'n', 'y', 0, 'b', 'y', 't', 'e', 's', 0xff, '\n'};
    char release[256], want[300];
    qm_exec_result *r;
    const uint8_t *data;
    size_t len = 77;
    qm_error *e;

    kernel_release(release, sizeof release);
    snprintf(want, sizeof want, "%s\n", release);
    r = run(m, uname_r, NULL, 0);
    CHECK(qm_exec_result_exit_code(r) == 0);
    data = qm_exec_result_stdout(r, &len);
    CHECK(stream_is(data, len, want, strlen(want)));
    CHECK(qm_exec_result_stdout(r, NULL) == data); /* len may be NULL */
    data = qm_exec_result_stderr(r, &len);
    CHECK(len == 0 && data != NULL && data[0] == 0);
    CHECK(!qm_exec_result_truncated(r));
    printf("agent: uname -r -> %s", want);
    qm_exec_result_free(r);

    r = run(m, split, NULL, 0);
    CHECK(qm_exec_result_exit_code(r) == 3);
    data = qm_exec_result_stdout(r, &len);
    CHECK(stream_is(data, len, "out\n", 4));
    data = qm_exec_result_stderr(r, &len);
    CHECK(stream_is(data, len, "err\n", 4));
    CHECK(!qm_exec_result_truncated(r));
    qm_exec_result_free(r);

    r = run(m, killed, NULL, 0);
    CHECK(qm_exec_result_exit_code(r) == -9);
    qm_exec_result_free(r);

    /* Standard input with NUL bytes and invalid UTF-8, back byte-exact. */
    r = run(m, cat, input, sizeof input);
    CHECK(qm_exec_result_exit_code(r) == 0);
    data = qm_exec_result_stdout(r, &len);
    CHECK(stream_is(data, len, input, sizeof input));
    qm_exec_result_free(r);

    /* No input at all (NULL, 0): cat sees end of file at once. */
    r = run(m, cat, NULL, 0);
    CHECK(qm_exec_result_exit_code(r) == 0);
    data = qm_exec_result_stdout(r, &len);
    CHECK(len == 0);
    qm_exec_result_free(r);

    /* A program the agent cannot start; the result discarded (NULL). */
    r = (qm_exec_result *)&len;
    e = EXPECT(QM_ERR_COMMAND, qm_agent_exec, m, missing, NULL, 0, AGENT_MS, &r);
    CHECK(r == (qm_exec_result *)&len); /* untouched */
    CHECK(qm_error_qmp_class(e) != NULL && qm_error_qmp_desc(e) != NULL);
    qm_error_free(e);
    OK(qm_agent_exec, m, uname_r, NULL, 0, AGENT_MS, NULL);
}

/* xorshift bytes, every value included. */
static void noise(uint8_t *buf, size_t len, uint64_t seed) {
    uint64_t x = seed | 1;
    size_t i;
    for (i = 0; i < len; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        buf[i] = (uint8_t)x;
    }
}

static void file_and_command_checks(qm_machine *m, size_t size) {
    uint8_t *data = malloc(size);
    qm_bytes back = {NULL, 0};
    char *out = NULL;
    qm_error *e;

    CHECK(data != NULL);
    noise(data, size, 42);
    OK(qm_agent_file_write, m, "/tmp/blob", data, size, AGENT_MS);
    OK(qm_agent_file_read, m, "/tmp/blob", AGENT_MS, &back);
    CHECK(back.len == size && memcmp(back.data, data, size) == 0 && back.data[size] == 0);
    qm_bytes_free(&back);
    CHECK(back.data == NULL && back.len == 0);
    qm_bytes_free(&back); /* twice: harmless */
    free(data);

    /* An empty file; reading it gives no bytes. */
    OK(qm_agent_file_write, m, "/tmp/empty", NULL, 0, AGENT_MS);
    back.data = (uint8_t *)&back; /* overwritten on success */
    back.len = 77;
    OK(qm_agent_file_read, m, "/tmp/empty", AGENT_MS, &back);
    CHECK(back.len == 0);
    qm_bytes_free(&back);
    OK(qm_agent_file_read, m, "/tmp/empty", AGENT_MS, NULL); /* discarded */

    /* A missing file: the agent's GenericError; the output untouched. */
    back.data = (uint8_t *)&back;
    back.len = 77;
    e = EXPECT(QM_ERR_COMMAND, qm_agent_file_read, m, "/no/such/file", AGENT_MS, &back);
    CHECK(strcmp(qm_error_qmp_class(e), "GenericError") == 0);
    CHECK(strstr(qm_error_qmp_desc(e), "/no/such/file") != NULL);
    CHECK(back.data == (uint8_t *)&back && back.len == 77);
    qm_error_free(e);
    FAILS(QM_ERR_COMMAND, qm_agent_file_write, m, "/no/such/dir/file", (const uint8_t *)"x", 1,
          AGENT_MS);

    /* Plain agent commands. */
    OK(qm_agent_cmd, m, "guest-info", NULL, AGENT_MS, &out);
    CHECK(strstr(out, "\"version\"") != NULL);
    CHECK(take_contains(out, "\"guest-exec\""));
    OK(qm_agent_cmd, m, "guest-ping", "{}", AGENT_MS, &out);
    CHECK(strcmp(out, "{}") == 0);
    qm_string_free(out);
    out = NULL;
    e = EXPECT(QM_ERR_COMMAND, qm_agent_cmd, m, "guest-no-such-command", NULL, AGENT_MS, &out);
    CHECK(strcmp(qm_error_qmp_class(e), "CommandNotFound") == 0);
    CHECK(out == NULL);
    qm_error_free(e);
}

/* A program that outlives its timeout: left running, its pid in the
 * message; the channel is in sync afterwards. */
static void exec_timeout(qm_machine *m) {
    static const char *const slow[] = {"sleep", "30", NULL};
    qm_exec_result *r = NULL;
    EXPECT_MSG(QM_ERR_TIMEOUT, "pid", qm_agent_exec, m, slow, NULL, 0, 500, &r);
    CHECK(r == NULL);
    OK(qm_agent_cmd, m, "guest-ping", NULL, AGENT_MS, NULL);
}

/* More than the agent keeps (16 MiB per stream): cut and flagged. */
static void truncation(void) {
    static const char *const big[] = {"head", "-c", "16777300", "/dev/zero", NULL};
    qm_machine *m = boot_with_agent(NULL);
    qm_exec_result *r = run(m, big, NULL, 0);
    const uint8_t *data;
    size_t len = 0;
    CHECK(qm_exec_result_exit_code(r) == 0);
    data = qm_exec_result_stdout(r, &len);
    CHECK(data != NULL && len == 16u << 20 && data[0] == 0 && data[len - 1] == 0);
    CHECK(qm_exec_result_truncated(r));
    qm_exec_result_free(r);
    OK(qm_shutdown, m, 10000);
    qm_machine_free(m);
}

static void result_accessors_on_null(void) {
    size_t len = 77;
    CHECK(qm_exec_result_exit_code(NULL) == -1);
    CHECK(qm_exec_result_stdout(NULL, &len) == NULL && len == 0);
    len = 77;
    CHECK(qm_exec_result_stderr(NULL, &len) == NULL && len == 0);
    CHECK(qm_exec_result_stdout(NULL, NULL) == NULL);
    CHECK(!qm_exec_result_truncated(NULL));
    qm_exec_result_free(NULL);
}

/* Without a channel: a configuration error, before and after launch. */
static void without_an_agent(void) {
    static const char *const t[] = {"true", NULL};
    qm_machine *m = none_machine();
    EXPECT_MSG(QM_ERR_STATE, "not been launched", qm_agent_wait_ready, m, 0);
    OK(qm_launch, m);
    FAILS(QM_ERR_ADD_DEVICE, qm_agent_wait_ready, m, 0);
    FAILS(QM_ERR_ADD_DEVICE, qm_agent_exec, m, t, NULL, 0, 0, NULL);
    FAILS(QM_ERR_ADD_DEVICE, qm_agent_cmd, m, "guest-ping", NULL, 0, NULL);
    FAILS(QM_ERR_ADD_DEVICE, qm_agent_file_read, m, "/etc/hostname", 0, NULL);
    FAILS(QM_ERR_ADD_DEVICE, qm_agent_file_write, m, "/tmp/x", NULL, 0, 0);
    OK(qm_shutdown, m, 10000);
    qm_machine_free(m);
}

static void on_channel(const char *device_type, int fast) {
    qm_machine *m = boot_with_agent(device_type);
    exec_checks(m);
    file_and_command_checks(m, fast ? 1 << 20 : 4096);
    if (fast) {
        exec_timeout(m);
    }
    /* guest-shutdown never answers: it returns {} once the guest is down. */
    {
        char *out = NULL;
        int code = -1;
        OK(qm_agent_cmd, m, "guest-shutdown", NULL, AGENT_MS, &out);
        CHECK(strcmp(out, "{}") == 0);
        qm_string_free(out);
        OK(qm_wait, m, 30000);
        OK(qm_exit_code, m, &code);
        CHECK(code == 0);
        FAILS(QM_ERR_STATE, qm_agent_cmd, m, "guest-ping", NULL, 0, NULL);
    }
    qm_machine_free(m);
    printf("agent: %s channel ok\n", device_type != NULL ? device_type : "virtio-serial");
}

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "truncation") == 0) {
        truncation();
        printf("agent truncation: ok\n");
        return 0;
    }
    result_accessors_on_null();
    without_an_agent();
    on_channel(NULL, 1);
    on_channel("isa-serial", 0);
    printf("agent: ok\n");
    return 0;
}
