"""A pause at a named point of a long command, for tests only: a test that interrupts or kills an export sets
$CNNX_HOLD_AT to a point, waits for the line announcing it on stderr, and signals then, so what it asserts never
depends on how fast the machine is. Without the variable, hold_point does nothing."""

from __future__ import annotations

import faulthandler
import os
import signal
import sys
import time

HOLD_ENV = "CNNX_HOLD_AT"
HOLD_SECONDS = 600  # a test that never signals still ends: the command goes on after this


def hold_point(name: str) -> None:
    if os.environ.get(HOLD_ENV) != name:
        return
    faulthandler.register(signal.SIGUSR1, all_threads=True)  # a test that waited in vain asks for the stacks
    print(f"cnnx: holding at {name} (pid {os.getpid()})", file=sys.stderr, flush=True)
    deadline = time.monotonic() + HOLD_SECONDS
    while time.monotonic() < deadline:
        time.sleep(0.05)  # SIGINT raises KeyboardInterrupt here, as anywhere else in the command
