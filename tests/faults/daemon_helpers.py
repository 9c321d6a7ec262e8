"""What the tests that run the real daemon process share (tests/faults, tests/e2e/test_daemon_process.py,
tests/e2e/test_demo_process.py): its config file, its own counters, the simulators' control calls,
the brokers, and one way to wait.

Rules:

1. Never wait on wall time for something to have happened: wait (:func:`wait_for`) on what the
   daemon itself reports (a metric, ``/readyz``, a log line) or what a simulator reports; the
   timeout is only a bound that turns a hang into a failure naming what was awaited.
2. A wait fails at once, with the daemon's log, when the daemon has exited meanwhile.
3. Processes and brokers started here are stopped when their ``with`` block ends, whatever happens.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import anyio.from_thread
import httpx

from streamd.embedded import EmbeddedBroker, free_port
from streamd.publish.spool import unpack
from tests.e2e.daemon import Daemon
from tests.faults.proxy import FaultProxy


def write_config(workdir: Path, port: int, kafka: str, *lines: str, http: str = "") -> Path:
    """``streamd.yaml`` in ``workdir``: the ``kafka`` section (a YAML flow mapping), HTTP on ``port``
    (``http``: more entries of that flow mapping, e.g. ``"auth_token: x"``), the spool in
    ``workdir``, then ``lines`` as they are."""
    config = workdir / "streamd.yaml"
    config.write_text(
        f"kafka: {kafka}\n"
        f"http: {{listen: '127.0.0.1:{port}'{', ' + http if http else ''}}}\n"
        f"spool: {{path: '{workdir / 'spool.db'}'}}\n" + "".join(f"{line}\n" for line in lines)
    )
    return config


def wait_for(
    condition: Callable[[], object], timeout: float, what: str, daemon: Daemon | None = None
) -> None:
    """Return once ``condition()`` is truthy; fail naming ``what`` after ``timeout`` seconds, or at
    once when ``daemon`` has exited (rule 2)."""
    end = time.monotonic() + timeout
    while not condition():
        if daemon is not None and daemon.process is not None and daemon.process.poll() is not None:
            raise AssertionError(
                f"daemon exited {daemon.process.returncode} waiting for {what}:\n{daemon.log()}"
            )
        if time.monotonic() > end:
            raise AssertionError(f"no {what} within {timeout}s" + (f":\n{daemon.log()}" if daemon else ""))
        time.sleep(0.05)


def samples(text: str, name: str, **labels: str) -> float:
    """Sum of the samples of ``name`` in a ``/metrics`` page whose labels include ``labels``."""
    total = 0.0
    for line in text.splitlines():
        if line.startswith((name + "{", name + " ")) and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def metric(daemon: Daemon, name: str, **labels: str) -> float:
    """Sum of the samples of ``name`` on the daemon's ``/metrics`` whose labels include ``labels``
    (-1: no answer)."""
    try:
        text = httpx.get(daemon.url("/metrics"), timeout=2).text
    except httpx.HTTPError:
        return -1
    return samples(text, name, **labels)


def published(daemon: Daemon, *topics: str) -> float:
    """Events Kafka acknowledged so far for ``topics`` (the metric's topics carry no prefix); all
    topics when none."""
    if not topics:
        return metric(daemon, "streamd_events_published_total")
    return sum(metric(daemon, "streamd_events_published_total", topic=t) for t in topics)


def received(daemon: Daemon, *topics: str) -> float:
    """Events read for ``topics`` (the metric's topics carry no prefix); all topics when none."""
    if not topics:
        return metric(daemon, "streamd_events_received_total")
    return sum(metric(daemon, "streamd_events_received_total", topic=t) for t in topics)


def spooled_rows(spool: Path, *topics: str) -> int:
    """Records of ``topics`` (as in Kafka, prefixed) the daemon holds durably in its spool database:
    written ahead (table ``written_ahead``, a packed batch per row) or spooled (table ``spool``);
    read-only, while it runs."""
    marks = ", ".join("?" * len(topics))
    with sqlite3.connect(f"file:{spool}?mode=ro", uri=True, timeout=5) as db:
        spooled = int(
            db.execute(f"SELECT COUNT(*) FROM spool WHERE topic IN ({marks})", topics).fetchone()[0]
        )
        batches = [unpack(bytes(packed)) for (packed,) in db.execute("SELECT packed FROM written_ahead")]
    return spooled + sum(r.topic in topics for batch in batches for r in batch)


def component_state(daemon: Daemon, name: str) -> str:
    """The state ``/readyz`` shows for component ``name`` (``?``: no answer)."""
    try:
        components = httpx.get(daemon.url("/readyz"), timeout=2).json()["components"]
        return str(components[name]["state"])
    except (httpx.HTTPError, ValueError, KeyError):
        return "?"


def log_lines(daemon: Daemon, text: str) -> int:
    """How many lines of the daemon's log so far contain ``text``."""
    return sum(text in line for line in daemon.log_path.read_text(errors="replace").splitlines())


def exit_code(daemon: Daemon, within: float) -> int:
    """The daemon's exit code; an assertion fails when it takes longer than ``within`` seconds."""
    assert daemon.process is not None
    try:
        return daemon.process.wait(timeout=within)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"still running {within}s later:\n{daemon.log()}") from None


def sim_call(sim_url: str, action: str, **params: object) -> dict[str, int]:
    """A simulator's control call (``POST /_sim/{action}``: ``rate``, ``pause``, ``stats``)."""
    return dict(httpx.post(f"{sim_url}/_sim/{action}", params=params, timeout=5).json())


@contextmanager
def o2g_sim_process(*args: str, port: int | None = None) -> Iterator[str]:
    """The O2G simulator in its own process (``python -m streamd.sim.o2g``); yields its URL."""
    port = port or free_port()
    sim = subprocess.Popen(
        [sys.executable, "-m", "streamd.sim.o2g", "--port", str(port), *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        if sim.poll() is not None:
            raise AssertionError(f"the O2G simulator exited {sim.returncode}")
        try:
            return httpx.get(f"{url}/api/rest", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_for(up, 20, "O2G simulator")
        yield url
    finally:
        sim.terminate()
        sim.wait(10)


@contextmanager
def embedded_broker(port: int | None = None, advertised_port: int | None = None) -> Iterator[str]:
    """The embedded broker, outliving any daemon of the block; yields its bootstrap."""
    with anyio.from_thread.start_blocking_portal() as portal:
        broker = EmbeddedBroker(port=port, advertised_port=advertised_port)
        bootstrap = portal.call(broker.__aenter__)
        try:
            yield bootstrap
        finally:
            portal.call(broker.__aexit__, None, None, None)


@contextmanager
def broker_behind_proxy() -> Iterator[tuple[str, FaultProxy]]:
    """The embedded broker, reached through a :class:`FaultProxy`: yields (bootstrap, proxy)."""
    broker_port, proxy_port = free_port(), free_port()
    proxy = FaultProxy(proxy_port, broker_port).start()
    try:
        with embedded_broker(broker_port, advertised_port=proxy_port) as bootstrap:
            yield bootstrap, proxy
    finally:
        proxy.close()
