"""Xima websocket mode against the simulator: subscribe, reconnect, liveness, fallback to polling,
Gap markers."""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterator

import anyio
import pytest

from streamd.errors import AuthError, FatalError
from streamd.events import SourceGap
from streamd.publish.memory import MemoryEmit
from streamd.sim.xima import Fault, WsPlan, XimaSimulator
from tests.helpers import FirstGapFails, GatedEmit, running, until

from .xima_helpers import make_source, values

pytestmark = pytest.mark.anyio

IDS = ["K0QUEUED", "K0STATE1"]


def ws_requests(sim: XimaSimulator) -> list[str]:
    return [r.query for r in sim.log.entries if r.websocket]


async def test_subscribes_with_repeated_ids_after_a_rest_baseline() -> None:
    async with XimaSimulator(init_requests=0, seed=5) as sim:
        emit = MemoryEmit()
        async with running(make_source(sim, mode="websocket", metrics=IDS), emit):
            baseline = len(sim.world.keys_of("K0QUEUED")) + len(sim.world.keys_of("K0STATE1"))
            await until(lambda: len(values(emit)) == baseline and len(ws_requests(sim)) == 1)
            assert all(e.snapshot for e in values(emit))
            await until(lambda: sim.subscribed)
            changed = [k for k in sim.step(3) if k[0] in IDS]
            await until(lambda: len(values(emit)) >= baseline + len(set(changed)))
        assert ws_requests(sim)[0] == "id=K0QUEUED&id=K0STATE1&auth_token=sim-key"
        pushed = values(emit)[baseline:]
        assert pushed
        assert not any(e.snapshot for e in pushed)
        assert {(e.data.metric_id, e.data.category_value) for e in pushed} <= set(changed)


async def test_reconnects_and_resubscribes_after_the_server_closes(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="streamd")
    async with XimaSimulator(init_requests=0) as sim:
        sim.faults.plan_websocket(WsPlan(close_after=1))
        emit = MemoryEmit()
        async with running(make_source(sim, mode="websocket", metrics=["K0QUEUED"]), emit):
            await until(lambda: len(ws_requests(sim)) == 1 and sim.subscribed)
            sim.world.values[("K0QUEUED", "Sales")]["count"] = 41
            sim.push([("K0QUEUED", "Sales")])  # first message, then the server closes
            await until(lambda: len(ws_requests(sim)) == 2 and sim.subscribed)
            sim.world.values[("K0QUEUED", "Sales")]["count"] = 42
            sim.push([("K0QUEUED", "Sales")])
            await until(lambda: any(e.data.value.count == 42 for e in values(emit)))
        assert "keepalive" not in caplog.text
        assert "close code 1011" in caplog.text
        assert len(sim.log.to("/metrics/values")) >= 2  # a REST baseline before each subscription
        assert any(e.data.value.count == 41 for e in values(emit))


async def test_server_that_never_answers_pings_is_dropped_and_reconnected(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="streamd")
    async with XimaSimulator(init_requests=0) as sim:
        sim.faults.plan_websocket(WsPlan(never_pong=True))
        emit = MemoryEmit()
        source = make_source(
            sim, mode="websocket", metrics=["K0QUEUED"], ping_interval=0.05, ping_timeout=0.1
        )
        async with running(source, emit):
            await until(lambda: len(ws_requests(sim)) == 2)
        assert "keepalive ping timeout" in caplog.text


async def test_falls_back_to_polling_when_the_endpoint_is_unavailable() -> None:
    async with XimaSimulator(init_requests=0) as sim:
        sim.faults.websocket_enabled = False
        emit = MemoryEmit()
        source = make_source(sim, mode="websocket", metrics=["K0QUEUED"], interval=0.05)
        async with running(source, emit):
            n = len(sim.log.to("/metrics/values"))
            await until(lambda: len(sim.log.to("/metrics/values")) >= n + 3)
            sim.world.values[("K0QUEUED", "Sales")] = {**sim.world.values[("K0QUEUED", "Sales")], "count": 7,
                                                 "lastUpdateTime": "2030-01-01T00:00:00.000Z"}  # fmt: skip
            await until(lambda: any(e.data.value.count == 7 for e in values(emit)))
        assert source.mode == "poll"
        assert [r.status for r in sim.log.entries if r.websocket] == [404]


async def test_unavailable_endpoint_without_fallback_is_fatal() -> None:
    async with XimaSimulator(init_requests=0) as sim:
        sim.faults.websocket_enabled = False
        source = make_source(sim, mode="websocket", metrics=["K0QUEUED"], websocket_fallback=False)
        with pytest.raises(FatalError, match="HTTP 404"):
            await source.run(MemoryEmit())


async def test_rejected_websocket_key_is_an_auth_error() -> None:
    async with XimaSimulator(init_requests=0) as sim:
        sim.faults.add("ws", Fault(401))
        with pytest.raises(AuthError, match="K0QUEUED"):
            await make_source(sim, mode="websocket", metrics=["K0QUEUED"]).run(MemoryEmit())


async def test_only_an_unroutable_socket_message_is_dead_lettered() -> None:
    async with XimaSimulator(init_requests=0) as sim:
        emit = MemoryEmit()
        async with running(make_source(sim, mode="websocket", metrics=["K0QUEUED"]), emit):
            await until(lambda: sim.subscribed)
            baseline = len(values(emit))
            sim.hub.send_raw("not json")
            sim.hub.send_raw('{"value": {"type": "COUNT", "count": 1}}')
            sim.hub.send_raw(
                '{"key": {"metricId": "K0QUEUED", "categoryValue": "Sales"}, "value": {"type": "NEW"}}'
            )
            await until(lambda: len(emit.of_type("streamd.deadletter.processing")) == 2)
            await until(lambda: len(values(emit)) == baseline + 1)
        dead = [e.data for e in emit.of_type("streamd.deadletter.processing")]
        assert [(d.error_type, d.raw) for d in dead] == [
            ("invalid_payload", "not json"),
            ("missing_key", '{"value": {"type": "COUNT", "count": 1}}'),
        ]
        published = values(emit)[-1]
        assert published.key == "cr1:K0QUEUED:Sales"
        assert published.deviations == ("$.value.type", "$.value.lastUpdateTime")


async def test_resubscribes_when_the_metric_list_changes() -> None:
    async with XimaSimulator(init_requests=0) as sim:
        emit = MemoryEmit()
        source = make_source(sim, mode="websocket", metrics="all", metrics_refresh=0.05)
        async with running(source, emit):
            await until(lambda: len(ws_requests(sim)) == 1)
            del sim.world.metrics["K0NOTICE"]
            await until(lambda: len(ws_requests(sim)) == 2, timeout=3)
        assert "K0NOTICE" in ws_requests(sim)[0]
        assert "K0NOTICE" not in ws_requests(sim)[1]


async def test_socket_closed_right_after_accept_does_not_reset_the_backoff() -> None:
    resets = 0

    def delays() -> Iterator[float]:
        nonlocal resets
        resets += 1  # the supervisor asks for a fresh sequence at start and on each healthy connection
        return itertools.repeat(0.0)

    async with XimaSimulator(init_requests=0) as sim:
        sim.faults.plan_websocket(WsPlan(close_after=0), WsPlan(close_after=0), WsPlan(close_after=0))
        emit = MemoryEmit()
        source = make_source(sim, mode="websocket", metrics=["K0QUEUED"], delays=delays, ping_interval=0.05)
        async with running(source, emit):
            await until(lambda: len(ws_requests(sim)) == 4)
            await until(lambda: resets == 2)
            await anyio.sleep(0.1)
        assert resets == 2  # the start, then the one healthy connection; not once per accept


async def test_stop_still_pushes_the_message_already_received() -> None:
    async with XimaSimulator(init_requests=0) as sim:
        emit = GatedEmit()
        source = make_source(sim, mode="websocket", metrics=["K0QUEUED"])
        with anyio.fail_after(3):
            async with anyio.create_task_group() as tg:
                await tg.start(source.run, emit)
                await until(lambda: sim.subscribed)
                sim.world.values[("K0QUEUED", "Sales")]["count"] = 41
                sim.push([("K0QUEUED", "Sales")])
                await until(lambda: emit.waiting == 1)  # received, applied, its push blocked
                tg.cancel_scope.cancel()  # stop while the message sits in streamd's memory
                emit.gate.set()  # the pipeline takes it again during the stop
        assert any(not e.snapshot and e.data.value.count == 41 for e in values(emit))


def gaps(emit: MemoryEmit) -> list[SourceGap]:
    return [e.data for e in emit.of_type("streamd.source.Gap")]


async def test_a_reconnect_publishes_one_gap_before_the_new_baseline_snapshot() -> None:
    async with XimaSimulator(init_requests=0) as sim:
        sim.faults.plan_websocket(WsPlan(close_after=1))
        emit = MemoryEmit()
        async with running(make_source(sim, mode="websocket", metrics=["K0QUEUED"]), emit):
            await until(lambda: len(ws_requests(sim)) == 1 and sim.subscribed)
            first = len(emit.events)
            assert gaps(emit) == []  # the first subscription is no gap
            sim.push([("K0QUEUED", "Sales")])  # one message, then the server closes
            await until(lambda: len(ws_requests(sim)) == 2 and sim.subscribed)
        [gap] = gaps(emit)
        events = emit.events[first:]
    assert (gap.source, gap.from_ <= gap.to) == ("cr1", True)
    assert "websocket" in gap.reason
    assert "close code 1011" in gap.reason
    at = next(i for i, e in enumerate(events) if e.type == "streamd.source.Gap")
    assert events[at].topic == "source-status"
    assert events[at].key == "cr1"
    snapshot = [e for e in events[at + 1 :] if e.topic == "xima.realtime"]
    assert snapshot
    assert all(e.snapshot for e in snapshot)
    assert not any(e.snapshot for e in events[:at] if e.topic == "xima.realtime")


async def test_falling_back_to_polling_after_streaming_publishes_one_gap_and_the_first_is_none() -> None:
    async with XimaSimulator(init_requests=0) as sim:
        sim.faults.plan_websocket(WsPlan(close_after=1))
        emit = MemoryEmit()
        source = make_source(sim, mode="websocket", metrics=["K0QUEUED"], interval=0.05)
        async with running(source, emit):
            await until(lambda: sim.subscribed)
            sim.faults.websocket_enabled = False  # the reconnect is refused: polling from then on
            sim.push([("K0QUEUED", "Sales")])
            await until(lambda: source.mode == "poll")
            n = len(sim.log.to("/metrics/values"))
            await until(lambda: len(sim.log.to("/metrics/values")) >= n + 3)
        assert [r.status for r in sim.log.entries if r.websocket] == [101, 404]
        assert len(gaps(emit)) == 1

    async with XimaSimulator(init_requests=0) as sim:  # refused from the start: nothing was missed
        sim.faults.websocket_enabled = False
        emit = MemoryEmit()
        source = make_source(sim, mode="websocket", metrics=["K0QUEUED"], interval=0.05)
        async with running(source, emit):
            await until(lambda: source.mode == "poll" and len(sim.log.to("/metrics/values")) >= 3)
        assert gaps(emit) == []


async def test_a_gap_whose_emit_failed_goes_out_with_the_next_baseline() -> None:
    async with XimaSimulator(init_requests=0) as sim:
        sim.faults.plan_websocket(WsPlan(close_after=1))
        emit = FirstGapFails()
        async with running(make_source(sim, mode="websocket", metrics=["K0QUEUED"]), emit):
            await until(lambda: len(ws_requests(sim)) == 1 and sim.subscribed)
            sim.push([("K0QUEUED", "Sales")])  # one message, then the server closes
            await until(lambda: emit.failed == 1 and sim.subscribed and len(ws_requests(sim)) >= 2)
            await until(lambda: gaps(emit))
        [gap] = gaps(emit)
        assert "close code 1011" in gap.reason
        at = next(i for i, e in enumerate(emit.events) if e.type == "streamd.source.Gap")
        assert any(e.snapshot for e in emit.events[at + 1 :] if e.topic == "xima.realtime")


async def test_a_gap_whose_baseline_failed_before_a_refused_reconnect_goes_out_before_polling() -> None:
    async with XimaSimulator(init_requests=0) as sim:
        sim.faults.plan_websocket(WsPlan(close_after=1))
        emit = FirstGapFails()
        source = make_source(sim, mode="websocket", metrics=["K0QUEUED"], interval=0.05)
        async with running(source, emit):
            await until(lambda: sim.subscribed)
            sim.faults.websocket_enabled = False  # the reconnect is refused: polling from then on
            sim.push([("K0QUEUED", "Sales")])
            await until(lambda: source.mode == "poll" and gaps(emit))
        assert emit.failed == 1
        assert len(gaps(emit)) == 1
