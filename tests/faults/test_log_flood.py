"""Fault injection: a Kafka outage under traffic does not flood the log.

streamd reports the outage as one state transition of its ``kafka`` component; aiokafka's own
loggers repeat the same errors many times a second while it retries (3,510 ERROR lines in 46 s
were seen). The daemon's log filter (:class:`streamd.logs.RepeatFilter`) lets one line per logger
and message through per minute, so the count of aiokafka lines over an outage is bounded by the
number of distinct messages, however long the outage lasts.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from pathlib import Path

import pytest

from streamd.embedded import free_port
from streamd.logs import JsonFormatter, RepeatFilter, TextFormatter
from tests.e2e.daemon import Daemon
from tests.faults.daemon_helpers import (
    broker_behind_proxy,
    component_state,
    log_lines,
    metric,
    o2g_sim_process,
    published,
    sim_call,
    wait_for,
    write_config,
)

LINE = re.compile(r"^\S+ \S+ (?P<level>[A-Z]+) +(?P<logger>[\w.]+): (?P<message>.*)$")
SPOOLED = 1_000  # events spooled during the outage (5 s of the 200 events/s): aiokafka retried all along


@pytest.mark.kafka
@pytest.mark.parametrize("outage", ["refuse", "blackhole"])
def test_a_kafka_outage_under_traffic_does_not_flood_the_log(tmp_path: Path, outage: str) -> None:
    port = free_port()
    with (
        o2g_sim_process("--agents", "10", "--rate", "0") as sim_url,
        broker_behind_proxy() as (bootstrap, proxy),
    ):
        config = write_config(
            tmp_path,
            port,
            f"{{bootstrap_servers: '{bootstrap}', idempotence: false, spool_after: 1s,"
            " delivery_timeout: 3s, startup_timeout: 20s}",
            "shutdown_grace: 5s",
            "sources:",
            f"  - {{kind: o2g, name: pbx, url: '{sim_url}', username: admin, password: admin,"
            " packages: [agent, telephony, pilot], snapshot: false}",
        )
        daemon = Daemon(config, port, tmp_path / "daemon.log").start()
        try:
            daemon.wait_ready()
            sim_call(sim_url, "rate", rate=200)
            wait_for(lambda: published(daemon) >= 200, 30, "traffic flowing into Kafka", daemon)
            before = len(_lines(daemon))  # the start-up's lines are not the outage's
            proxy.mode = outage  # type: ignore[assignment]
            wait_for(lambda: component_state(daemon, "kafka") == "retrying", 15, "kafka retrying", daemon)
            # The outage goes on under traffic (the spool fills) while aiokafka keeps retrying.
            wait_for(lambda: metric(daemon, "streamd_spool_events") >= SPOOLED, 60, "events spooled", daemon)
            wait_for(lambda: log_lines(daemon, " aiokafka") >= 1, 30, "aiokafka saying what failed", daemon)
            outage_lines = _lines(daemon)[before:]
            proxy.mode = "pass"
            wait_for(lambda: component_state(daemon, "kafka") == "running", 30, "kafka running", daemon)
            sim_call(sim_url, "rate", rate=0)
            code = daemon.terminate(timeout=10)
        finally:
            daemon.kill()
    assert code == 0, daemon.log()
    kafka_lines = [line for line in outage_lines if line[0].startswith(("aiokafka", "kafka"))]
    repeats = {key: n for key, n in Counter(kafka_lines).items() if n > 1}
    assert not repeats, repeats  # one line per logger and message within the minute
    assert len(kafka_lines) <= 20, kafka_lines
    assert kafka_lines  # aiokafka did say what failed
    transitions = [m for _, m in outage_lines if m.startswith("publisher kafka: running -> retrying")]
    assert len(transitions) == 1, outage_lines  # streamd's own line: once per transition
    assert len(outage_lines) - len(kafka_lines) <= 10, outage_lines  # and streamd itself is quiet


def _lines(daemon: Daemon) -> list[tuple[str, str]]:
    """``(logger, message)`` of every log line so far, messages with digits masked (node ids,
    ports, counts vary between repeats of the same error)."""
    out = []
    for raw in daemon.log_path.read_text(errors="replace").splitlines():
        if match := LINE.match(raw):
            out.append((match["logger"], re.sub(r"\d+", "N", match["message"])))
    return out


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _record(name: str, msg: str, *args: object, level: int = logging.ERROR) -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, msg, args, None)


def test_repeat_filter_passes_one_line_per_logger_and_message_per_window() -> None:
    clock = Clock()
    repeat = RepeatFilter(window=60, clock=clock)
    connect = "Unable connect to node with id %s: %s"
    first = _record("aiokafka", connect, 1, "[Errno 111] Connect call failed ('127.0.0.1', 4001)")
    assert repeat.filter(first)
    passed = [
        repeat.filter(
            _record("aiokafka", connect, node, f"[Errno 111] Connect call failed ('127.0.0.1', {port})")
        )
        for node, port in ((1, 4001), (2, 4002), (1, 4001))
    ]
    assert passed == [False, False, False]  # digits differ, the message is the same
    assert repeat.filter(_record("aiokafka", connect, 1, "KafkaConnectionError: closed"))  # another message
    assert repeat.filter(
        _record("aiokafka", connect, 1, "[Errno 111] Connect call failed", level=logging.WARNING)
    )
    assert repeat.filter(_record("aiokafka.producer.sender", "Got error produce response: %s", "x"))
    for _ in range(5):  # streamd's own lines and other libraries are never filtered
        assert repeat.filter(_record("streamd.pipeline", "outage spool refuses events"))
        assert repeat.filter(_record("httpx", "same"))
    clock.now += 59.9
    assert not repeat.filter(
        _record("aiokafka", connect, 3, "[Errno 111] Connect call failed ('127.0.0.1', 1)")
    )
    clock.now += 0.1  # the window is over: one line again, saying how many were dropped
    again = _record("aiokafka", connect, 1, "[Errno 111] Connect call failed ('127.0.0.1', 4001)")
    assert repeat.filter(again)
    assert again.suppressed == 4  # type: ignore[attr-defined]
    assert (
        TextFormatter()
        .format(again)
        .endswith(
            "aiokafka: Unable connect to node with id 1: [Errno 111] Connect call failed ('127.0.0.1', 4001)"
            " [4 alike suppressed]"
        )
    )
    assert '"suppressed":4' in JsonFormatter().format(again)
    assert not repeat.filter(
        _record("aiokafka", connect, 1, "[Errno 111] Connect call failed ('127.0.0.1', 1)")
    )
    clock.now += 60
    quiet = _record("aiokafka", connect, 1, "[Errno 111] Connect call failed ('127.0.0.1', 4001)")
    assert repeat.filter(quiet)
    assert quiet.suppressed == 1  # type: ignore[attr-defined]


def test_repeat_filter_remembers_a_bounded_number_of_messages() -> None:
    clock = Clock()
    repeat = RepeatFilter(window=60, max_kinds=3, clock=clock)
    for word in ("a", "b", "c", "d"):  # "d" evicts "a", the longest unrepeated
        assert repeat.filter(_record("aiokafka", f"error {word}"))
    assert len(repeat._seen) == 3
    assert repeat.filter(_record("aiokafka", "error a"))  # forgotten, so it passes again
    assert not repeat.filter(_record("aiokafka", "error d"))
    clock.now += 60
    assert repeat.filter(_record("aiokafka", "error e"))  # every window is over: all forgotten first
    assert len(repeat._seen) == 1
