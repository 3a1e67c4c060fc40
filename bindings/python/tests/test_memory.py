"""Memory hygiene: every string and error the library returns is freed."""

import os

import pytest

from qemu_machine import CommandError, Timeout

BIG = "x" * 100_000


def rss_bytes():
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def test_results_and_errors_do_not_leak(vm):
    # QEMU reads QMP input slowly (~4 us a byte): send BIG only once.
    vm.command("qom-set", path="/machine", property="append", value=BIG)

    def calls():
        # Each round gets 200 kB of results and 200 kB of error messages
        # from the library: 40 MB each over the loop if not freed.
        assert vm.command("qom-get", path="/machine", property="append") == BIG
        reply = vm.qmp("qom-get", path="/machine", property="append")
        assert reply == {"return": BIG}
        with pytest.raises(Timeout) as info:  # the message quotes both
            vm.event_wait(BIG, {"data": BIG}, timeout=0)
        assert len(info.value.message) > 2 * len(BIG)
        with pytest.raises(CommandError) as info:
            vm.command("no-such-command")
        assert info.value.qmp_class == "CommandNotFound"
        assert "error" in vm.qmp("no-such-command")
        # Break the reference cycle pytest.raises() leaves (the traceback
        # holds this frame, which holds `info`): such garbage, collected at
        # times that vary with the interpreter, is not what is measured.
        del info

    for _ in range(20):
        calls()
    before = rss_bytes()
    for _ in range(200):
        calls()
    growth = rss_bytes() - before
    assert growth < 8 * 2**20, f"RSS grew by {growth / 2**20:.1f} MiB"
