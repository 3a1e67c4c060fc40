/*
 * Contender (b): qemu-machine through its C API.
 */
#include "bench.h"

#include <qemu_machine.h>

struct vm {
    qm_machine *m;
};

static void check(qm_status status, qm_error *err, const char *what) {
    if (status != QM_OK) {
        die("%s: %s", what, err != NULL ? qm_error_message(err) : qm_status_str((int)status));
    }
}

static struct vm *qm_launch_vm(void) {
    struct vm *vm = calloc(1, sizeof *vm);
    qm_error *err = NULL;
    check(qm_machine_new(qemu_binary(), &vm->m, &err), err, "qm_machine_new");
    check(qm_set_machine_type(vm->m, "none", &err), err, "machine type");
    check(qm_add_arg(vm->m, "-nodefaults", &err), err, "arg");
    check(qm_add_arg(vm->m, "-accel", &err), err, "arg");
    check(qm_add_arg(vm->m, "tcg", &err), err, "arg");
    check(qm_launch(vm->m, &err), err, "qm_launch");
    return vm;
}

static char *qm_command_text(struct vm *vm, const char *cmd) {
    char *out = NULL;
    qm_error *err = NULL;
    check(qm_command(vm->m, cmd, NULL, 30000, &out, &err), err, cmd);
    return out;
}

static void qm_free_text(char *text) { qm_string_free(text); }

static void qm_wait_event(struct vm *vm, const char *name) {
    qm_error *err = NULL;
    check(qm_event_wait(vm->m, name, NULL, 30000, NULL, &err), err, name);
}

static void qm_shutdown_vm(struct vm *vm) {
    qm_error *err = NULL;
    check(qm_shutdown(vm->m, 30000, &err), err, "qm_shutdown");
    qm_machine_free(vm->m);
    free(vm);
}

static const struct driver QM = {"qemu-machine-c", qm_launch_vm, qm_command_text, qm_free_text,
                                 qm_wait_event, qm_shutdown_vm};

int main(int argc, char **argv) { return bench_main(&QM, argc, argv); }
