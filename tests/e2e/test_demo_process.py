"""``streamd demo`` through the real entry point, stopped the way a terminal stops it: Ctrl-C sends
SIGINT to the whole foreground process group (issue 22 item 8: the embedded broker shared that group,
died first, and aiokafka logged errors while the daemon was still flushing)."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.faults.daemon_helpers import wait_for

pytestmark = pytest.mark.kafka


@pytest.mark.timeout(300)  # a loaded CI machine starts the broker, four simulators and the daemon slowly
def test_ctrl_c_in_a_terminal_stops_the_demo_cleanly_and_the_broker_last(tmp_path: Path) -> None:
    log_path = tmp_path / "demo.log"
    with log_path.open("wb") as log:
        demo = subprocess.Popen(
            [sys.executable, "-m", "streamd", "demo", "--port", "0", "--agents", "3"],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            start_new_session=True,  # its own process group, like a shell job in a terminal
        )
        try:

            def text() -> str:
                return log_path.read_text(errors="replace")

            def running() -> bool:
                if demo.poll() is not None:
                    raise AssertionError(f"demo exited {demo.returncode}:\n{text()}")
                return "events published" in text()  # running, and its first report is out

            wait_for(running, 180, "demo running")
            os.killpg(demo.pid, signal.SIGINT)  # Ctrl-C: the whole foreground group gets it
            code = demo.wait(timeout=60)
        finally:
            if demo.poll() is None:
                os.killpg(demo.pid, signal.SIGKILL)
                demo.wait()
    out = text()
    assert code == 0, f"exit {code}:\n{out}"
    assert "streamd stopped:" in out, out
    errors = [line for line in out.splitlines() if re.search(r"\b(ERROR|CRITICAL)\b", line)]
    assert errors == [], f"error lines: {errors}\n{out}"
    library = [line for line in out.splitlines() if "aiokafka" in line]
    assert library == [], f"aiokafka lines: {library}\n{out}"
    assert "Traceback" not in out, out
    # The broker was stopped, by the demo, after the daemon: nothing listens on its port any more.
    match = re.search(r"embedded Kafka-protocol broker listening on 127\.0\.0\.1:(\d+)", out)
    assert match, out
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", int(match.group(1))), timeout=2).close()
