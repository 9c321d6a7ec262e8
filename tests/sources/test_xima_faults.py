"""Xima faults found by reading seeds 000/001 against the code (issue 15 item 15), each against the
simulator's fault that reproduces it: a REST answer behind the socket, a category value removed
from a metric, a historic answer without rows, a REST re-poll failing under a healthy socket."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import pytest

from streamd.publish.memory import MemoryEmit
from streamd.sim.xima import Fault, WsPlan, XimaSimulator
from streamd.sources.http import CertificateError
from streamd.sources.xima.models import HISTORIC_ROW_TYPE, HISTORIC_SUMMARY_TYPE
from tests.helpers import Clock, MemoryCursors, running, until
from tests.sources.calabrio_tls import CA_FILE, tls_front

from .xima_helpers import make_source, values

pytestmark = pytest.mark.anyio

SALES = ("K0QUEUED", "Sales")
CALM = {"ping_interval": 1.0, "ping_timeout": 5.0}  # no reconnect of a loaded machine's own making
INTERNAL = ("K0DIRCNT", "Internal")


def counts_of(emit: MemoryEmit, key: tuple[str, str]) -> list[int]:
    return [
        e.data.value.count
        for e in values(emit)
        if (e.data.metric_id, e.data.category_value) == key and e.data.value.type == "COUNT"
    ]


def snapshots_of(emit: MemoryEmit, key: tuple[str, str]) -> int:
    return sum(1 for e in values(emit) if e.snapshot and (e.data.metric_id, e.data.category_value) == key)


def ws_connections(sim: XimaSimulator) -> int:
    return sum(1 for r in sim.log.entries if r.websocket)


async def test_a_rest_answer_behind_the_socket_never_undoes_a_newer_value() -> None:
    now = [1_700_000_000_000]
    async with XimaSimulator(init_requests=0, now_ms=lambda: now[0]) as sim:
        sim.faults.plan_websocket(WsPlan(close_after=1))  # the first socket closes after one message
        emit = MemoryEmit()
        async with running(make_source(sim, mode="websocket", **CALM, metrics=["K0QUEUED"]), emit):
            await until(lambda: sim.subscribed)
            sim.faults.rest_lag = 1  # from now on REST answers one version behind the socket
            now[0] += 60_000
            sim.world.set(SALES, {"type": "COUNT", "count": 9})
            sim.push([SALES])  # the socket delivers 9, then closes
            await until(lambda: ws_connections(sim) == 2 and sim.subscribed)
            await until(lambda: snapshots_of(emit, SALES) == 2)  # the reconnect's REST baseline
        assert counts_of(emit, SALES)[-2:] == [9, 9]  # the push, then the baseline snapshot: still 9
        assert 0 not in counts_of(emit, SALES)[counts_of(emit, SALES).index(9) :]


async def test_a_category_value_removed_from_its_metric_is_not_republished() -> None:
    async with XimaSimulator(init_requests=0) as sim:
        emit = MemoryEmit()
        source = make_source(sim, mode="websocket", **CALM, metrics=["K0DIRCNT"], refresh_every=0.1)
        async with running(source, emit):
            await until(lambda: snapshots_of(emit, INTERNAL) >= 2)
            sim.world.drop_category(INTERNAL)
            inbound = snapshots_of(emit, ("K0DIRCNT", "Inbound"))
            await until(lambda: snapshots_of(emit, ("K0DIRCNT", "Inbound")) >= inbound + 1)
            internal = snapshots_of(emit, INTERNAL)
            await until(lambda: snapshots_of(emit, ("K0DIRCNT", "Inbound")) >= inbound + 4)
            assert snapshots_of(emit, INTERNAL) == internal  # no longer part of the snapshot
            assert ws_connections(sim) == 1  # the refresh re-polls REST; the socket stays up


async def test_a_failing_refresh_repoll_keeps_the_socket_and_snapshots_the_held_values(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="streamd")
    async with XimaSimulator(init_requests=0) as sim:
        emit = MemoryEmit()
        source = make_source(sim, mode="websocket", **CALM, metrics=["K0QUEUED"], refresh_every=0.1)
        async with running(source, emit):
            await until(lambda: snapshots_of(emit, SALES) >= 2)
            sim.faults.add("values", Fault(503), times=2)
            await until(lambda: "refresh re-poll failed" in caplog.text)
            snapshots = snapshots_of(emit, SALES)
            await until(lambda: snapshots_of(emit, SALES) >= snapshots + 2)
        assert ws_connections(sim) == 1
        assert source.deps.component.state.value == "running"


async def test_a_historic_answer_without_rows_is_retried_not_skipped() -> None:
    async with XimaSimulator(agents=3) as sim:
        sim.faults.reports_without_rows = 2  # the first two answers for the period lack their rows
        emit = MemoryEmit()
        now = Clock(datetime(2026, 1, 1, 0, 20, tzinfo=UTC))
        report = {"key": "LT39K5C5", "every": "15m", "lag": 0, "start": "2026-01-01T00:00:00Z"}
        source = make_source(sim, cursors=MemoryCursors(), now=now, metrics=[], historic=[report])
        async with running(source, emit):
            await until(lambda: emit.of_type(HISTORIC_SUMMARY_TYPE))
        assert [c[1] for c in sim.historic_calls] == ["2026-01-01T00:00:00.000+00:00"] * 3  # same period
        assert len(emit.of_type(HISTORIC_ROW_TYPE)) == 3
        assert not [e for e in emit.events if e.topic == "deadletter"]
        assert emit.of_type(HISTORIC_SUMMARY_TYPE)[0].data.period_end == (
            (datetime(2026, 1, 1, tzinfo=UTC) + timedelta(minutes=15)).isoformat(timespec="milliseconds")
        )


# -- TLS (issue 16 item 9): REST and the websocket share the TlsSettings ----------------------------


async def test_an_untrusted_certificate_fails_rest_and_websocket_with_its_cause() -> None:
    async with XimaSimulator(init_requests=0) as sim, tls_front(sim.url) as front:
        rest = make_source(sim, url=front, metrics=["K0QUEUED"])
        with pytest.raises(CertificateError, match="TLS certificate not trusted"):
            await rest.run(MemoryEmit())
        ws = make_source(sim, mode="websocket", **CALM, websocket_url=front, metrics=["K0QUEUED"])
        with pytest.raises(CertificateError, match="TLS certificate not trusted"):
            await ws.run(MemoryEmit())  # REST in clear, the wss:// subscription refused
        assert ws_connections(sim) == 0


@pytest.mark.parametrize("tls", [{"ca_file": str(CA_FILE)}, {"verify_tls": False}])
async def test_rest_and_wss_with_the_ca_file_or_verification_off(tls: dict[str, object]) -> None:
    async with XimaSimulator(init_requests=0) as sim, tls_front(sim.url) as front:
        emit = MemoryEmit()
        source = make_source(sim, url=front, mode="websocket", **CALM, metrics=["K0QUEUED"], **tls)
        async with running(source, emit):
            await until(lambda: sim.subscribed)
            sim.world.values[SALES]["count"] = 41
            sim.push([SALES])
            await until(lambda: 41 in counts_of(emit, SALES))
        assert source.mode == "websocket"
        assert ws_connections(sim) == 1
