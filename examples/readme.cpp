#include <chrono>
#include <iostream>
#include <qemu_machine.hpp>

int main() {
    using namespace std::chrono_literals;
    try {
        qm::Machine vm("qemu-system-x86_64");
        vm.set_machine_type("none").add_args({"-accel", "tcg", "-nodefaults"});
        vm.launch();
        std::cout << "status: " << vm.command("query-status") << "\n";
        vm.command("stop");
        std::cout << "event: " << vm.event_wait("STOP", "", 5s) << "\n";
        vm.shutdown(10s);
    } catch (const qm::Error &e) {
        std::cerr << "error " << e.status() << ": " << e.what() << "\n";
        return 1;
    }
    return 0;
}
