"""Constants and helpers shared by the tests."""

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
PACKAGE_ROOT = REPO / "bindings" / "python"
#: The QEMU binary (``QM_TEST_QEMU`` overrides, as in the Rust and C tests).
QEMU = os.environ.get("QM_TEST_QEMU", "qemu-system-x86_64")
#: ``-machine none`` under TCG without default devices starts in ~20 ms.
NONE_ARGS = ("-accel", "tcg", "-nodefaults")
PROMPT = "guest# "


def boot(machine):
    """Launch a guest and wait for its shell; return the boot output."""
    machine.launch()
    output = machine.console_wait("QM-GUEST-READY", "Kernel panic", timeout=60)
    machine.console_wait(PROMPT, timeout=30)
    return output
