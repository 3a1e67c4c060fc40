/* Boot the test guest and run a program in it through the guest agent.
 * Usage: agent GUEST_DIR (scripts/build-guest.sh prints it). */
#include <stdio.h>
#include <qemu_machine.h>

int main(int argc, char **argv) {
    char kernel[4096], initrd[4096];
    const char *uname[] = {"uname", "-r", NULL};
    qm_machine *vm = NULL;
    qm_exec_result *r = NULL;
    qm_error *err = NULL;
    if (argc < 2) return 2;
    snprintf(kernel, sizeof kernel, "%s/vmlinux", argv[1]);
    snprintf(initrd, sizeof initrd, "%s/initramfs.cpio.gz", argv[1]);
    const char *args[] = {"-accel", "tcg", "-m", "256", "-nodefaults", "-kernel", kernel,
                          "-initrd", initrd, "-append", "console=ttyS0"};
    qm_machine_new("qemu-system-x86_64", &vm, NULL);
    for (size_t i = 0; i < sizeof args / sizeof args[0]; i++) qm_add_arg(vm, args[i], NULL);
    qm_set_console(vm, NULL, 0, NULL); /* ttyS0: the guest's shell */
    qm_set_agent(vm, NULL, NULL);      /* virtio-serial port org.qemu.guest_agent.0 */
    if (qm_launch(vm, &err) != QM_OK ||
        qm_agent_wait_ready(vm, 60000, &err) != QM_OK || /* qemu-ga starts late in the boot */
        qm_agent_exec(vm, uname, NULL, 0, 10000, &r, &err) != QM_OK) {
        fprintf(stderr, "error: %s\n", qm_error_message(err));
        qm_error_free(err);
        qm_machine_free(vm);
        return 1;
    }
    printf("exit code: %d\noutput: %s", qm_exec_result_exit_code(r),
           (const char *)qm_exec_result_stdout(r, NULL));
    qm_exec_result_free(r);
    qm_machine_free(vm); /* kills QEMU and cleans up */
    return 0;
}
