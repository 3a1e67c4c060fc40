"""Launch QEMU, query it over QMP, stop it, wait for the event, shut down."""
from qemu_machine import Machine

with Machine(args=["-accel", "tcg", "-nodefaults"], machine_type="none") as vm:
    vm.launch()
    print("pid:", vm.pid)
    print("status:", vm.command("query-status")["status"])
    vm.command("stop")
    event = vm.event_wait("STOP", timeout=5)
    print("event:", event["event"])
    print("status:", vm.command("query-status")["status"])
# Leaving the block shut QEMU down; the exit code stays readable.
print("exit code:", vm.exit_code)
vm.close()
