"""``python -m streamd.tether`` (streamd/tether.py): a command started through it goes when the
process that started it is SIGKILLed (the embedded broker of a demo-like parent included), gets
the stop signals sent to the tether, and the tether ends as the command did."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from streamd.tether import kill_group, tethered
from tests.faults.daemon_helpers import wait_for

ROOT = Path(__file__).resolve().parents[2]


def gone(pid: int) -> bool:
    """No such process any more (a zombie no one reaped counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):  # ESRCH: it went while being read
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


class Parent:
    """A Python process running a test's code in a session of its own, its stdout piped."""

    def __init__(self, code: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(code)],
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
            start_new_session=True,
        )
        self.tether = 0  # the pid of the tether it started, once it said it

    def read(self, prefix: str) -> str:
        """The rest of its next line (which must start with ``prefix``)."""
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        assert line.startswith(prefix), f"expected {prefix!r}, got {line!r}"
        return line.removeprefix(prefix).strip()

    def sigkill(self) -> None:
        """SIGKILL: no clean-up of its own runs."""
        self.process.kill()
        self.process.wait()


@contextmanager
def parent(code: str) -> Iterator[Parent]:
    """:class:`Parent` running ``code``; it and its tether's group are killed at the end, should a
    test fail."""
    started = Parent(code)
    try:
        yield started
    finally:
        started.sigkill()
        assert started.process.stdout is not None
        started.process.stdout.close()
        if started.tether:
            kill_group(started.tether)


def test_a_tethered_command_goes_with_a_sigkilled_parent() -> None:
    child = "import os, time; print('child', os.getpid(), flush=True); time.sleep(300)"
    code = f"""
        import subprocess, sys, threading, time
        from streamd.tether import tethered

        def start():  # from a worker thread that ends at once: the tether does not depend on it
            p = subprocess.Popen(tethered([sys.executable, "-c", {child!r}]), stdin=subprocess.PIPE,
                                 start_new_session=True)
            print("tether", p.pid, flush=True)

        thread = threading.Thread(target=start)
        thread.start()
        thread.join()
        time.sleep(300)
    """
    with parent(code) as demo:
        demo.tether = int(demo.read("tether "))
        pid = int(demo.read("child "))
        assert not gone(pid)
        demo.sigkill()
        wait_for(lambda: gone(pid), 30, f"the tethered command {pid} gone after its parent's SIGKILL")
        wait_for(lambda: gone(demo.tether), 30, "the tether gone")


@pytest.mark.kafka
def test_the_embedded_broker_goes_with_a_sigkilled_demo_like_parent() -> None:
    code = """
        import anyio
        from streamd.embedded import EmbeddedBroker

        async def main():
            broker = EmbeddedBroker()
            async with broker as bootstrap:
                print("tether", broker._process.pid, flush=True)
                print("broker", bootstrap, flush=True)
                await anyio.sleep_forever()

        anyio.run(main)
    """
    with parent(code) as demo:
        demo.tether = int(demo.read("tether "))
        host, port = demo.read("broker ").rsplit(":", 1)
        socket.create_connection((host, int(port)), timeout=5).close()  # it serves
        demo.sigkill()

        def refused() -> bool:
            try:
                socket.create_connection((host, int(port)), timeout=2).close()
            except ConnectionRefusedError:
                return True
            except ConnectionResetError:  # accepted by the kernel as the broker died: not yet refused
                return False
            return False

        wait_for(refused, 30, f"the embedded broker on {port} gone after its parent's SIGKILL")


def start(command: list[str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        tethered(command), stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, start_new_session=True
    )


@pytest.mark.parametrize(
    ("handler", "ends"),
    [
        ("signal.signal(signal.SIGTERM, lambda *a: sys.exit(3))", 3),  # its own exit status
        ("pass", -signal.SIGTERM),  # ended by the signal: so is the tether
    ],
)
def test_a_stop_signal_to_the_tether_reaches_the_command_and_the_tether_ends_as_it_did(
    handler: str, ends: int
) -> None:
    code = f"import signal, sys, time; {handler}; print('up', flush=True); time.sleep(300)"
    process = start([sys.executable, "-c", code])
    try:
        assert process.stdout is not None
        assert process.stdout.readline() == "up\n"
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == ends
    finally:
        kill_group(process.pid)
        process.wait()
        for stream in (process.stdin, process.stdout):
            assert stream is not None
            stream.close()


def test_a_command_ended_by_sigkill_ends_the_tether_by_sigkill_too() -> None:
    """The OOM killer's way, or the tether's own last resort: no traceback, the same signal."""
    code = "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"
    with subprocess.Popen(  # stdin held open: the tether's parent is alive throughout
        tethered([sys.executable, "-c", code]), stdin=subprocess.PIPE, stderr=subprocess.PIPE
    ) as process:
        assert process.wait(timeout=30) == -signal.SIGKILL
        assert process.stderr is not None
        assert b"Traceback" not in process.stderr.read()


def test_without_a_command_it_says_how_to_use_it() -> None:
    done = subprocess.run(tethered([]), capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 2
    assert "usage: python -m streamd.tether COMMAND" in done.stderr
