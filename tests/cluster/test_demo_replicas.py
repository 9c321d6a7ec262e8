"""``streamd demo --replicas N`` (streamd/cluster/demo.py): N ``streamd run`` processes against the
demo's embedded broker and simulators share the sources; the assignment shows on each replica's
``/readyz`` (its ``cluster`` component and the sources it runs) and in the demo's output, and each
replica serves the wallboard."""

from __future__ import annotations

import contextlib
import io
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path

import anyio
import httpx
import pytest

import streamd.cluster.demo
import streamd.demo
from streamd.cli import _parser
from streamd.cluster.demo import owned, replica_config
from streamd.sim import calabrio, xima
from tests.faults.daemon_helpers import wait_for

pytestmark = pytest.mark.anyio


def test_the_demo_takes_replicas_and_a_replica_config_is_a_cluster_member() -> None:
    args = _parser().parse_args(["demo", "--replicas", "3"])
    assert args.replicas == 3
    base = {"kafka": {"bootstrap_servers": "embedded", "topic_prefix": "streamd."}, "sources": []}
    cfg = replica_config(base, "127.0.0.1:9092")
    assert cfg["kafka"] == {"bootstrap_servers": "127.0.0.1:9092", "topic_prefix": "streamd."}
    assert cfg["cluster"]["enabled"] is True
    assert base["kafka"]["bootstrap_servers"] == "embedded"  # not modified
    readyz = {
        "components": {"wfm": {"kind": "source"}, "kafka": {"kind": "publisher"}, "s": {"kind": "sink"}}
    }
    assert owned(readyz) == ["s", "wfm"]


@pytest.mark.kafka
async def test_two_replicas_share_the_demo_sources(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(streamd.demo, "demo_simulators", lambda: [calabrio.demo_source, xima.demo_source])
    out = io.StringIO()
    runs = re.compile(r"replica (\d) runs (.+)")

    def assignment() -> dict[str, str]:
        return {m[1]: m[2] for m in runs.finditer(out.getvalue())}  # the latest line of each

    async with anyio.create_task_group() as tg:
        tg.start_soon(
            lambda: streamd.cluster.demo.run_replicas(
                2, port=0, agents=3, duration=None, host="127.0.0.1", out=out
            )
        )
        with anyio.fail_after(90):
            while sorted(assignment().values()) != ["cr1", "wfm"]:
                await anyio.sleep(0.2)
        urls = re.findall(r"health (http://\S+)/readyz", out.getvalue())
        assert len(urls) == 2
        async with httpx.AsyncClient(timeout=5, trust_env=False) as http:
            for url in urls:
                body = (await http.get(f"{url}/readyz")).json()
                cluster = body["components"]["cluster"]
                assert re.search(r"generation \d+: owns (cr1|wfm)$", cluster["detail"]), cluster
                assert len(owned(body)) == 1
                assert (await http.get(f"{url}/wallboard")).status_code == 200
        tg.cancel_scope.cancel()  # Ctrl-C: the replicas get SIGTERM


class Demo:
    """``streamd demo --replicas 2`` through the real entry point, in a session of its own."""

    def __init__(self, log_path: Path) -> None:
        self.log_path = log_path
        self.workdir = ""  # the demo's work directory, once it runs
        self.log = log_path.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "streamd", "demo", "--replicas", "2", "--port", "0", "--agents", "3"],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            start_new_session=True,
        )

    def text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_running(self) -> list[int]:
        """Wait until the replicas run; their HTTP ports."""

        def assigned() -> bool:
            if self.process.poll() is not None:
                raise AssertionError(f"demo exited {self.process.returncode}:\n{self.text()}")
            return "Ctrl-C to stop" in self.text()

        wait_for(assigned, 180, "demo replicas running")
        replicas = [int(p) for p in re.findall(r"wallboard http://127\.0\.0\.1:(\d+)/wallboard", self.text())]
        assert len(replicas) == 2, self.text()
        self.workdir = re.findall(r"log (\S+)/replica-0\.log", self.text())[0]
        return replicas

    def broker_port(self) -> int:
        [port] = re.findall(r"Kafka \(embedded\) at 127\.0\.0\.1:(\d+)", self.text())
        return int(port)


@contextmanager
def demo_process(tmp_path: Path) -> Iterator[Demo]:
    """A :class:`Demo`; at the end its group is killed if it still runs."""
    demo = Demo(tmp_path / "demo.log")
    try:
        yield demo
    finally:
        if demo.process.poll() is None:
            os.killpg(demo.process.pid, signal.SIGKILL)
            demo.process.wait()
        demo.log.close()


@pytest.mark.kafka
@pytest.mark.timeout(300)  # a broker, four simulators and two daemon processes start on a loaded machine
def test_a_stop_signal_to_the_demo_stops_every_replica_and_exits_cleanly(tmp_path: Path) -> None:
    with demo_process(tmp_path) as demo:
        replicas = demo.wait_running()
        demo.process.send_signal(signal.SIGTERM)  # the demo only: its replicas are in their own sessions
        code = demo.process.wait(timeout=120)
    assert code == 0, f"exit {code}:\n{demo.text()}"
    for port in replicas:  # stopped by the demo, not orphaned
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=2).close()


def _processes_naming(*markers: str) -> list[int]:
    """The pids of processes whose command line names one of ``markers``."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if proc.name.isdigit() and any(m in cmdline for m in markers):
            found.append(int(proc.name))
    return found


def _refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except ConnectionRefusedError:
        return True
    return False


@pytest.mark.kafka
@pytest.mark.timeout(300)  # a broker, four simulators and two daemon processes start on a loaded machine
def test_a_sigkilled_demo_takes_its_replicas_and_broker_with_it(tmp_path: Path) -> None:
    markers: list[str] = []
    try:
        with demo_process(tmp_path) as demo:
            replicas = demo.wait_running()
            broker = demo.broker_port()
            markers = [demo.workdir, f"tcp://127.0.0.1:{broker}"]
            assert _processes_naming(*markers)  # the replicas and the broker run
            demo.process.kill()  # SIGKILL the demo alone: nothing of its own stops them
            demo.process.wait()
            for port in [*replicas, broker]:
                wait_for(partial(_refused, port), 60, f"port {port} closed after the demo's SIGKILL")
            wait_for(lambda: not _processes_naming(*markers), 60, "no process of the demo left")
    finally:
        for pid in _processes_naming(*markers) if markers else []:  # this test's leftovers only
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if markers:
            shutil.rmtree(markers[0], ignore_errors=True)  # the demo's work directory
