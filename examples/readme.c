#include <stdio.h>
#include <qemu_machine.h>

int main(void) {
    qm_machine *vm = NULL;
    qm_error *err = NULL;
    char *status = NULL, *event = NULL;
    const char *args[] = {"-accel", "tcg", "-nodefaults"};
    qm_machine_new("qemu-system-x86_64", &vm, NULL);
    qm_set_machine_type(vm, "none", NULL);
    for (int i = 0; i < 3; i++) qm_add_arg(vm, args[i], NULL);
    if (qm_launch(vm, &err) != QM_OK ||
        qm_command(vm, "query-status", NULL, 5000, &status, &err) != QM_OK ||
        qm_command(vm, "stop", NULL, 5000, NULL, &err) != QM_OK ||
        qm_event_wait(vm, "STOP", NULL, 5000, &event, &err) != QM_OK ||
        qm_shutdown(vm, 10000, &err) != QM_OK) {
        fprintf(stderr, "error: %s\n", qm_error_message(err));
        qm_error_free(err);
        qm_machine_free(vm);
        return 1;
    }
    printf("status: %s\nevent: %s\n", status, event);
    qm_string_free(status);
    qm_string_free(event);
    qm_machine_free(vm);
    return 0;
}
