"""The O2G source against the O2G simulator on 127.0.0.1: chunk delivery and every scripted fault."""

from __future__ import annotations

import base64
from typing import Any

import anyio
import orjson
import pytest

from streamd.errors import AuthError, FatalError
from streamd.events import AgentState, DeadLetter, Event
from streamd.publish.memory import MemoryEmit
from streamd.sim.o2g import O2GSimulator
from streamd.sources.o2g import channel
from streamd.telemetry import ComponentState
from tests.helpers import GatedEmit

from .o2g_helpers import (
    call,
    call_refs,
    logins,
    make_source,
    publish_and_expect,
    resubscribed_after,
    running,
    until,
)

pytestmark = pytest.mark.anyio


async def test_subscribe_and_chunk_stream_give_snapshot_then_events() -> None:
    emit = MemoryEmit()
    async with O2GSimulator(agents=3, keepalive_period=0.05) as sim:
        source = make_source(sim)
        async with running(source, emit):
            assert source.deps.component.state is ComponentState.RUNNING  # readiness after the snapshot
            snapshot = [e for e in emit.events if e.snapshot]
            agents = [e for e in snapshot if isinstance(e.data, AgentState)]
            assert sorted(a.data.agent_id for a in agents) == ["oxe70100", "oxe70101", "oxe70102"]
            assert {e.type for e in snapshot} >= {"o2g.agent.OnAgentStateChanged", "o2g.pilot.PilotSnapshot"}
            assert sim.monitored_pilots == {"60141", "60142"}
            generated = sim.generate(20)
            await publish_and_expect(sim, emit, ["a1", "a2", "a3"])
            await until(lambda: len([e for e in emit.events if not e.snapshot]) >= len(generated) + 3)
            live = [e for e in emit.events if not e.snapshot]
            assert not any("OnChannelInformation" in e.type for e in emit.events)
            assert not [e for e in emit.events if isinstance(e.data, DeadLetter)]  # the traffic is valid
            assert call_refs(emit)[-3:] == ["a1", "a2", "a3"]  # order kept
            pilot_events = [e for e in live if e.topic == "o2g.pilot"]
            assert all(e.key == f"pbx1:{e.data['pilot']}" for e in pilot_events)
            agent_events = [e for e in live if e.type == "o2g.agent.OnAgentStateChanged"]
            assert all(e.key == f"pbx1:{e.data['loginName']}" for e in agent_events)
        subscribe = [r for r in sim.requests if r.path == "/api/rest/1.0/subscriptions"]
        assert [r.method for r in subscribe] == ["POST"]


async def test_malformed_event_is_dead_lettered_and_stream_goes_on() -> None:
    emit = MemoryEmit()
    async with O2GSimulator(agents=1) as sim, running(make_source(sim), emit):
        sim.publish_raw(b'{"eventName": "OnPilotCallCreated", "pilot": }\n')
        await publish_and_expect(sim, emit, ["after"])
        dead = [e for e in emit.events if isinstance(e.data, DeadLetter)]
        assert len(dead) == 1
        assert dead[0].data.stage == "decode"
        assert '"pilot": }' in (dead[0].data.raw or "")


@pytest.mark.parametrize(
    ("raw", "error_type"),
    [
        (b"not json at all\n", "malformed_json"),
        (b'{"eventName": "OnPilotCallCreated", "pilot": "60141", "callRef": }\n', "malformed_json"),
        (b'{"pilot": "60141", "callRef": "1"}\n', "missing_event_name"),
        (b'{"eventName": "OnPilotCallCreated", "callRef": "1", "caller": "6"}\n', "missing_key"),
    ],
)
async def test_unroutable_input_is_a_dead_letter_with_its_raw_bytes(raw: bytes, error_type: str) -> None:
    emit = MemoryEmit()
    async with O2GSimulator(agents=1) as sim, running(make_source(sim), emit):
        sim.publish_raw(raw)
        sim.publish({"eventName": "OnPilotCallCreated", "pilot": "60141", "callRef": "2", "caller": 6})
        await publish_and_expect(sim, emit, ["after"])
    dead = [e.data for e in emit.events if isinstance(e.data, DeadLetter)]
    assert [d.error_type for d in dead] == [error_type]
    kept = dead[0].raw.encode() if dead[0].raw is not None else base64.b64decode(dead[0].raw_b64 or "")
    if error_type == "malformed_json":
        assert kept == raw.rstrip(b"\n")  # the bytes as received
    else:
        assert orjson.loads(kept) == orjson.loads(raw)  # parsed JSON: kept as the same JSON
    deviating = [
        e for e in emit.events if e.type == "o2g.pilot.OnPilotCallCreated" and e.data["callRef"] == "2"
    ]
    assert deviating[0].deviations == ("$.caller", "$.cause")  # published: a number for a string, no cause
    assert deviating[0].data["caller"] == "6"


async def test_cut_mid_event_reopens_same_subscription_without_loss() -> None:
    emit = MemoryEmit()
    async with O2GSimulator(agents=1) as sim, running(make_source(sim), emit):
        await publish_and_expect(sim, emit, ["c1"])
        sim.cut_next_event()
        sim.publish(call("c2"), call("c3"))
        await until(lambda: "c3" in call_refs(emit))
        await publish_and_expect(sim, emit, ["c4"])
        assert call_refs(emit) == ["c1", "c2", "c3", "c4"]
        assert logins(sim) == 1  # same session, same subscription: only the channel was reopened
        assert len([r for r in sim.requests if r.path == "/OTEvents"]) == 2


def _oversize(ref: str, size: int) -> dict[str, Any]:
    return {**call(ref), "pad": "x" * size}


async def test_a_complete_oversize_event_is_a_dead_letter_and_the_channel_goes_on() -> None:
    """Wire rule 4: its end is known, so the events after it on the same channel are read too."""
    emit = MemoryEmit()
    async with O2GSimulator(agents=1) as sim, running(make_source(sim, max_event_size=1024), emit):
        await publish_and_expect(sim, emit, ["c1"])
        sim.publish(_oversize("c2", 4000), call("c3"))
        await until(lambda: "c3" in call_refs(emit))
        (letter,) = [e.data for e in emit.events if isinstance(e.data, DeadLetter)]
        assert (letter.stage, letter.error_type) == ("decode", "oversize_event")
        assert letter.raw is not None
        assert orjson.loads(letter.raw)["callRef"] == "c2"  # whole: below the 64 KiB kept
        assert call_refs(emit) == ["c1", "c3"]
        assert len([r for r in sim.requests if r.path == "/OTEvents"]) == 1  # never reopened


async def test_the_events_read_with_an_oversize_event_that_never_ends_are_pushed() -> None:
    """An event still incomplete beyond max_event_size ends the channel (no way to resync); the
    events the same read completed before it are pushed, not dropped with the read."""
    emit = MemoryEmit()
    async with O2GSimulator(agents=1) as sim, running(make_source(sim, max_event_size=1024), emit):
        await publish_and_expect(sim, emit, ["c1"])
        sim.publish(call("c2"), _oversize("c3", 300_000))  # one write: c2 and the start of c3 in one read
        await until(lambda: len([r for r in sim.requests if r.path == "/OTEvents"]) == 2)
        await publish_and_expect(sim, emit, ["c4"])
        assert call_refs(emit) == ["c1", "c2", "c4"]
        (letter,) = [e.data for e in emit.events if isinstance(e.data, DeadLetter)]  # its start
        assert (letter.error_type, (letter.raw or "")[:30]) == (
            "oversize_event",
            '{"eventName":"OnPilotCallCreat',
        )
        assert logins(sim) == 1  # the same subscription: only the channel was reopened


async def test_session_expiry_logs_in_again_resubscribes_and_resnapshots() -> None:
    emit = MemoryEmit()
    async with O2GSimulator(agents=2) as sim, running(make_source(sim), emit):
        await resubscribed_after(sim, sim.expire_sessions)
        await publish_and_expect(sim, emit, ["s1", "s2"])
        assert logins(sim) == 2
        agent_snapshots = [e for e in emit.events if e.snapshot and isinstance(e.data, AgentState)]
        assert len(agent_snapshots) == 4  # one snapshot per subscription


async def test_keepalives_keep_a_short_ttl_session_alive() -> None:
    emit = MemoryEmit()
    async with O2GSimulator(agents=1, session_ttl=0.15) as sim, running(make_source(sim), emit):
        await until(lambda: sum(r.path.endswith("/keepalive") for r in sim.requests) >= 6)
        await publish_and_expect(sim, emit, ["t1"])
        assert logins(sim) == 1  # the session never expired


async def test_keepalive_403_means_session_lost() -> None:
    emit = MemoryEmit()
    async with O2GSimulator(agents=1) as sim, running(make_source(sim, keepalive_interval=0.05), emit):
        await until(lambda: any(r.path.endswith("/keepalive") for r in sim.requests))
        sim.fail_next("/sessions/keepalive", status=403, error="INVALID_SESSION")
        await until(lambda: logins(sim) == 2)
        await until(lambda: len(sim.subscriptions()) == 1)
        await publish_and_expect(sim, emit, ["k1"])


async def test_503s_are_retried_until_ready() -> None:
    emit = MemoryEmit()
    async with O2GSimulator(agents=1) as sim:
        sim.fail_next("/authenticate", status=503, count=2)
        sim.fail_next("/subscriptions", status=503, count=1)
        async with running(make_source(sim), emit):
            await publish_and_expect(sim, emit, ["r1"])
        assert [r.status for r in sim.requests if r.path == "/api/rest/authenticate"] == [503, 503, 200, 200]
        assert sum(r.status == 503 for r in sim.requests if r.path == "/api/rest/1.0/subscriptions") == 1


async def test_silence_past_idle_timeout_reconnects_without_loss() -> None:
    emit = MemoryEmit()
    async with (
        O2GSimulator(agents=1, keepalive_period=10) as sim,
        running(make_source(sim, idle_timeout=0.1), emit),
    ):
        await publish_and_expect(sim, emit, ["q1"])
        sim.silence()
        sim.publish(call("q2"))
        await until(lambda: len([r for r in sim.requests if r.path == "/OTEvents"]) >= 3)
        sim.silence(False)
        await until(lambda: "q2" in call_refs(emit))
        await publish_and_expect(sim, emit, ["q3"])
        assert call_refs(emit)[-1] == "q3"


async def test_subscription_gone_is_recreated_in_the_same_session() -> None:
    emit = MemoryEmit()
    async with O2GSimulator(agents=1) as sim, running(make_source(sim), emit):
        await resubscribed_after(sim, sim.drop_subscriptions)
        await publish_and_expect(sim, emit, ["g1"])
        assert logins(sim) == 1
        assert any(r.path == "/OTEvents" and r.status == 404 for r in sim.requests)


async def test_ha_fails_over_to_the_secondary_and_back() -> None:
    emit = MemoryEmit()
    async with O2GSimulator(agents=1) as primary, O2GSimulator(agents=1) as secondary:
        secondary.set_down()
        source = make_source(primary, secondary_url=secondary.url, reopen_window=0.2)
        async with running(source, emit):  # a server down: its channel is retried 0.2 s, then the other
            await publish_and_expect(primary, emit, ["p1"])
            primary.set_down()
            secondary.set_down(False)
            await until(lambda: bool(secondary.subscriptions()))
            await publish_and_expect(secondary, emit, ["s1"])
            secondary.set_down()
            primary.set_down(False)
            await until(lambda: bool(primary.subscriptions()))
            await publish_and_expect(primary, emit, ["p2"])
        assert call_refs(emit) == ["p1", "s1", "p2"]


async def test_bad_credentials_on_first_login_are_fatal() -> None:
    emit = MemoryEmit()
    async with O2GSimulator(agents=1) as sim:
        source = make_source(sim, password="wrong")
        with anyio.fail_after(2), pytest.raises(AuthError, match="check the O2G login and password"):
            await source.run(emit)
        assert [r.path for r in sim.requests] == ["/api/rest", "/api/rest/authenticate"]


async def test_cancellation_unsubscribes_and_deletes_the_session_promptly() -> None:
    emit = MemoryEmit()
    async with O2GSimulator(agents=1) as sim:
        with anyio.fail_after(1.5):
            async with running(make_source(sim), emit):
                (sid,) = sim.subscriptions()
                assert len(sim.sessions) == 1
        deletes = [(r.method, r.path, r.status) for r in sim.requests if r.method == "DELETE"]
        assert deletes == [
            ("DELETE", f"/api/rest/1.0/subscriptions/{sid}", 204),
            ("DELETE", "/api/rest/1.0/sessions", 204),
        ]
        assert sim.sessions == {}


async def test_refused_subscription_is_fatal() -> None:
    emit = MemoryEmit()
    async with O2GSimulator(agents=1) as sim:
        sim.refuse_subscriptions = "license count exceeded"
        with anyio.fail_after(2), pytest.raises(FatalError, match="REFUSED: license count exceeded"):
            await make_source(sim).run(emit)


async def test_rti_context_is_activated_and_its_snapshot_streams() -> None:
    emit = MemoryEmit()
    async with O2GSimulator(agents=2) as sim, running(make_source(sim, packages=["rti"]), emit):
        await until(lambda: len(emit.of_type("o2g.rti.OnPilotRtiChanged")) == 2)
        assert sim.rti_context["filter"]["pilotFilter"] == {"numbers": ["*"], "attributes": ["ALL"]}
        metrics = [e for e in emit.events if e.topic == "queue-metrics"]
        assert {e.key for e in metrics} >= {"pbx1:60141:waiting", "pbx1:60142:waiting"}


async def test_session_lost_during_the_snapshot_is_retried_not_crashed() -> None:
    emit = MemoryEmit()
    async with O2GSimulator(agents=3) as sim:
        sim.fail_next("/acd/agent/state", status=403, error="INVALID_SESSION")
        async with running(make_source(sim), emit):
            await until(lambda: logins(sim) == 2)
            await publish_and_expect(sim, emit, ["d1"])
        agent_snapshots = [e for e in emit.events if e.snapshot and isinstance(e.data, AgentState)]
        assert len(agent_snapshots) == 3  # only the second, complete snapshot was published


async def test_stop_pushes_the_events_already_read_from_the_channel(monkeypatch: pytest.MonkeyPatch) -> None:
    decoded: list[Event] = []
    to_events = channel.to_events

    def counting(source: str, items: Any, *, snapshot: bool = False, react: Any = None) -> list[Event]:
        events = to_events(source, items, snapshot=snapshot, react=react)
        decoded.extend(events)
        return events

    emit = GatedEmit()
    refs = [f"s{i}" for i in range(8)]
    async with O2GSimulator(agents=1, events_per_chunk=1) as sim:
        source = make_source(sim)
        monkeypatch.setattr(channel, "to_events", counting)  # to know what the pump has decoded
        with anyio.fail_after(3):
            async with anyio.create_task_group() as tg:
                await tg.start(source.run, emit)
                for ref in refs:  # one chunk each: the first push blocks, the rest queue up in the pump
                    sim.publish(call(ref))
                calls = "o2g.pilot.OnPilotCallCreated"  # (a telephony snapshot answer comes first)
                await until(lambda: [e.type for e in decoded].count(calls) == len(refs) and emit.waiting == 1)
                tg.cancel_scope.cancel()  # stop while O2G's events sit decoded in streamd's memory
                emit.gate.set()  # the pipeline takes them again during the stop
        assert call_refs(emit) == refs
        assert sim.subscriptions() == []  # and the teardown still unsubscribed
