"""The library in a process forked without exec, as ``multiprocessing``
with the fork start method makes: the child launches machines of its own,
and the machines it inherited are inert there (calls raise StateError
naming the owner; closing them never touches the parent's QEMU)."""

import multiprocessing
import os

from support import NONE_ARGS, QEMU

from qemu_machine import Machine, StateError


def _child(inherited, results):
    try:
        try:
            inherited.command("query-status")
            results.put("the inherited machine answered")
            return
        except StateError as error:
            if str(os.getppid()) not in str(error):
                results.put(f"the error does not name the owner: {error}")
                return
        with Machine(QEMU, NONE_ARGS, machine_type="none") as own:
            own.launch()
            status = own.command("query-status")["status"]
            own.shutdown()
        # Closing (or garbage-collecting) the inherited copy: memory only.
        inherited.close()
        results.put(f"ok {status}")
    except Exception as error:  # noqa: BLE001 - reported to the parent
        results.put(f"{type(error).__name__}: {error}")


def test_multiprocessing_fork_child_launches_and_inherited_machines_are_inert(vm):
    context = multiprocessing.get_context("fork")
    results = context.Queue()
    child = context.Process(target=_child, args=(vm, results))
    child.start()
    child.join(60)
    if child.is_alive():
        child.kill()
        child.join()
        raise AssertionError("the forked child hung")
    assert results.get(timeout=5) == "ok running"
    assert child.exitcode == 0
    # The parent's machine is untouched.
    assert vm.command("query-status")["status"] == "running"
    vm.shutdown()
