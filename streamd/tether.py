"""``python -m streamd.tether COMMAND...``: run COMMAND and stop it when the process that started
this one dies, however it died (a parent-death watch for the embedded broker and the replicas of
``streamd demo --replicas``, which run in sessions of their own).

Rules:

1. The parent starts this process with a pipe as its stdin (:func:`tethered`) and never writes to
   it. The kernel closes the parent's end when the parent dies, SIGKILL included, and whichever of
   its threads started this process (unlike Linux's ``PR_SET_PDEATHSIG``, which fires when the
   spawning *thread* ends): end of file on stdin means the parent is gone. COMMAND then gets
   SIGTERM and, if it has not exited within :data:`STOP_BOUND`, SIGKILL.
2. SIGTERM, SIGINT and SIGHUP sent to this process are passed on to COMMAND, every one of them (a
   second stop signal asks a streamd daemon to hurry); after one, end of file on stdin changes
   nothing.
3. COMMAND runs in this process's process group, with stdin from ``/dev/null`` and this process's
   stdout and stderr. This process cannot pass SIGKILL on: a parent that must kill kills the group
   (:func:`kill_group`; start this process in a session of its own).
4. This process ends as COMMAND did: with its exit status, or by the signal that ended it.
5. Only the standard library: it starts quickly and imports nothing of the product.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence
from types import FrameType

STOP_BOUND = 15.0
"""Seconds COMMAND has to stop after SIGTERM once the parent is gone, before SIGKILL."""
FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def tethered(command: Sequence[str]) -> list[str]:
    """The command line that runs ``command`` tethered to the caller; start it with
    ``stdin=subprocess.PIPE`` (rule 1) and ``start_new_session=True`` (rule 3)."""
    return [sys.executable, "-m", "streamd.tether", *command]


def kill_group(pid: int) -> None:
    """SIGKILL the process group of the tether ``pid`` (started in a session of its own): the
    tether and COMMAND (rule 3)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


def main(argv: Sequence[str]) -> int:
    """Run ``argv`` until it exits (module rules); its exit status."""
    if not argv:
        print("usage: python -m streamd.tether COMMAND [ARG...]", file=sys.stderr)
        return 2
    stopping = threading.Event()
    child: subprocess.Popen[bytes] | None = None
    early: list[int] = []  # signals that came before COMMAND started

    def forward(signum: int, frame: FrameType | None) -> None:
        stopping.set()
        if child is None:
            early.append(signum)
        else:
            child.send_signal(signum)  # nothing once it has been waited for

    for stop in FORWARDED:
        signal.signal(stop, forward)
    child = subprocess.Popen(list(argv), stdin=subprocess.DEVNULL)
    for signum in early:
        child.send_signal(signum)

    def watch(child: subprocess.Popen[bytes]) -> None:
        while os.read(0, 4096):
            pass  # the parent never writes (rule 1)
        if stopping.is_set():
            return
        stopping.set()
        child.terminate()
        try:
            child.wait(STOP_BOUND)
        except subprocess.TimeoutExpired:
            child.kill()

    threading.Thread(target=watch, args=(child,), name="parent-watch", daemon=True).start()
    code = child.wait()
    if code < 0:  # rule 4: end by the same signal
        if -code not in (signal.SIGKILL, signal.SIGSTOP):  # those two cannot be (and need not be) reset
            signal.signal(-code, signal.SIG_DFL)
        os.kill(os.getpid(), -code)
        return 128 - code  # the shell's convention, should the signal not end this process
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
