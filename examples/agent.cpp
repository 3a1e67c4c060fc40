// Boot the test guest and run a program in it through the guest agent.
// Usage: agent GUEST_DIR (scripts/build-guest.sh prints it).
#include <chrono>
#include <iostream>
#include <qemu_machine.hpp>

int main(int argc, char **argv) {
    using namespace std::chrono_literals;
    if (argc < 2) return 2;
    const std::string guest = argv[1];
    try {
        qm::Machine vm("qemu-system-x86_64");
        vm.add_args({"-accel", "tcg", "-m", "256", "-nodefaults", "-kernel", guest + "/vmlinux",
                     "-initrd", guest + "/initramfs.cpio.gz", "-append", "console=ttyS0"});
        vm.set_console().set_agent();  // ttyS0; virtio-serial org.qemu.guest_agent.0
        vm.launch();
        vm.agent_wait_ready(60s);      // qemu-ga starts late in the boot
        qm::ExecResult r = vm.agent_exec({"uname", "-r"});
        std::cout << "exit code: " << r.exit_code << "\noutput: " << r.out;
    } catch (const qm::Error &e) {  // the destructor killed QEMU and cleaned up
        std::cerr << "error " << e.status() << ": " << e.what() << "\n";
        return 1;
    }
    return 0;
}
