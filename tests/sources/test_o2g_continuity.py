"""O2G continuity (issue 17): telephony snapshots, re-snapshots after a reopen, system events, Gap
markers, and the session kept through transient keepalive failures, against the simulator."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from streamd.events import SourceGap, SourceStatus
from streamd.publish.memory import MemoryEmit
from streamd.sim.o2g import O2GSimulator
from streamd.telemetry import REGISTRY, ComponentState

from .o2g_helpers import logins, make_source, publish_and_expect, resubscribed_after, running, until

pytestmark = pytest.mark.anyio

FOREVER = 10**6
WITH_SYSTEM = ["agent", "pilot", "telephony", "system"]


def telephony(emit: MemoryEmit, login: str) -> list[Any]:
    """The ``OnTelephonyState`` events of ``login`` emitted so far, in order."""
    return [e for e in emit.of_type("o2g.telephony.OnTelephonyState") if e.data["loginName"] == login]


def calls_of(event: Any) -> list[str]:
    return [c["callRef"] for c in event.data["state"]["calls"]]


def requests(sim: O2GSimulator, path: str) -> int:
    return sum(1 for r in sim.requests if r.path == "/api/rest/1.0" + path and r.status < 300)


def gaps(emit: MemoryEmit) -> list[Any]:
    return emit.of_type("streamd.source.Gap")


def statuses(emit: MemoryEmit) -> list[SourceStatus]:
    return [e.data for e in emit.of_type("streamd.source.Status")]


async def test_calls_in_progress_at_subscribe_time_appear_as_snapshot_records() -> None:
    emit = MemoryEmit()
    async with O2GSimulator(agents=2) as sim:
        sim.traffic.hold_call("oxe70100", "c7")  # began before streamd subscribed: no event of it
        async with running(make_source(sim), emit):
            await until(lambda: telephony(emit, "oxe70100") and telephony(emit, "oxe70101"))
            (busy,), (idle,) = telephony(emit, "oxe70100"), telephony(emit, "oxe70101")
            assert (calls_of(busy), calls_of(idle)) == (["c7"], [])
            assert busy.snapshot
            assert idle.snapshot
            assert busy.key == "pbx1:oxe70100"
            assert requests(sim, "/telephony/state/snapshot") == 1  # "*": one request for all users
            assert gaps(emit) == []  # the first subscription is no gap


async def test_listed_logins_get_one_telephony_snapshot_request_each() -> None:
    emit = MemoryEmit()
    async with O2GSimulator(agents=3) as sim:
        source = make_source(sim, packages=["telephony"], ids=["oxe70100", "oxe70102"])
        async with running(source, emit):
            await until(lambda: telephony(emit, "oxe70100") and telephony(emit, "oxe70102"))
            assert requests(sim, "/telephony/state/snapshot") == 2
            assert telephony(emit, "oxe70101") == []  # not subscribed, not asked


async def test_a_reopen_is_followed_by_a_resnapshot_that_closes_calls_ended_meanwhile() -> None:
    emit = MemoryEmit()
    async with O2GSimulator(agents=1) as sim:
        sim.traffic.hold_call("oxe70100", "c1")
        async with running(make_source(sim, packages=["agent", "telephony", "rti"]), emit):
            await until(lambda: len(telephony(emit, "oxe70100")) == 1)
            (sid,) = sim.subscriptions()
            agent_reads, rti = requests(sim, "/logins"), requests(sim, "/acd/rti/snapshot")
            sim.traffic.drop_call("oxe70100")  # the call ends unseen while the channel is closed
            sim.close_channels()
            await until(lambda: len(telephony(emit, "oxe70100")) == 2)
            assert calls_of(telephony(emit, "oxe70100")[-1]) == []  # the call is closed
            assert requests(sim, "/telephony/state/snapshot") == 2
            await until(lambda: requests(sim, "/logins") == agent_reads + 1)  # agent states read again
            assert requests(sim, "/acd/rti/snapshot") == rti + 1
            assert sim.subscriptions() == [sid]
            assert logins(sim) == 1
            assert gaps(emit) == []  # same subscription: O2G queued its events, nothing was lost


async def test_cti_link_down_marks_the_node_stale_and_up_resnapshots() -> None:
    emit = MemoryEmit()
    async with O2GSimulator(agents=1) as sim:
        sim.traffic.hold_call("oxe70100", "c1")
        async with running(make_source(sim, packages=WITH_SYSTEM), emit):
            await until(lambda: len(telephony(emit, "oxe70100")) == 1)
            assert sim.cti_link("1", up=False) == 1
            await until(lambda: [s.status for s in statuses(emit)] == ["stale"])
            (down,) = statuses(emit)
            assert (down.source, down.scope, down.reason) == ("pbx1", "node:1", "OnCtiLinkDown")
            labels = {"source": "pbx1", "node": "1"}
            assert REGISTRY.get_sample_value("streamd_o2g_cti_link", labels) == 0
            sim.traffic.drop_call("oxe70100")  # ended while the node's link was down
            sim.cti_link("1", up=True)
            await until(lambda: len(telephony(emit, "oxe70100")) == 2)
            assert calls_of(telephony(emit, "oxe70100")[-1]) == []
            assert [s.status for s in statuses(emit)] == ["stale", "live"]
            assert REGISTRY.get_sample_value("streamd_o2g_cti_link", labels) == 1
            status_topic = {e.topic for e in emit.of_type("streamd.source.Status")}
            assert status_topic == {"source-status"}
            assert emit.of_type("o2g.system.OnCtiLinkDown")  # the vendor events are published too


async def test_pbx_loaded_resnapshots_and_license_expiration_warns(caplog: pytest.LogCaptureFixture) -> None:
    emit = MemoryEmit()
    async with O2GSimulator(agents=1) as sim, running(make_source(sim, packages=WITH_SYSTEM), emit):
        await until(lambda: len(telephony(emit, "oxe70100")) == 1)
        sim.pbx_loaded("1")
        await until(lambda: len(telephony(emit, "oxe70100")) == 2)
        with caplog.at_level(logging.WARNING, logger="streamd.sources.o2g"):
            sim.license_expiration(-3)
            await until(
                lambda: REGISTRY.get_sample_value("streamd_o2g_license_days", {"source": "pbx1"}) == -3
            )
        assert "licence file expired 3 days ago" in caplog.text


async def test_a_subscription_lost_is_marked_by_one_gap_before_its_snapshot() -> None:
    emit = MemoryEmit()
    async with O2GSimulator(agents=1) as sim, running(make_source(sim), emit):
        await publish_and_expect(sim, emit, ["g1"])
        await resubscribed_after(sim, sim.drop_subscriptions)
        await until(lambda: len(telephony(emit, "oxe70100")) == 2)
        (gap,) = gaps(emit)
        data = gap.data
        assert isinstance(data, SourceGap)
        assert (gap.topic, gap.key, data.source) == ("source-status", "pbx1", "pbx1")
        assert data.from_ <= data.to
        assert data.reason.startswith("subscription gone")
        position = emit.events.index(gap)
        assert emit.events.index(telephony(emit, "oxe70100")[-1]) > position  # the snapshot follows
        assert [e.snapshot for e in emit.events[position + 1 :] if e.type == "streamd.agent.State"][:1] == [
            True
        ]


async def test_an_o2g_restart_gives_one_gap_a_new_subscription_and_a_snapshot() -> None:
    emit = MemoryEmit()
    async with O2GSimulator(agents=1) as sim, running(make_source(sim, delay=0.02), emit):
        await publish_and_expect(sim, emit, ["r1"])
        sim.set_deploying(True)  # sessions lost, Tomcat's 404 until the webapp is up
        await until(lambda: [r.status for r in sim.requests if r.path == "/api/rest"].count(404) >= 2)
        sim.set_deploying(False)
        await until(lambda: logins(sim) == 2 and len(telephony(emit, "oxe70100")) == 2)
        (gap,) = gaps(emit)
        assert "404" in gap.data.reason  # the channel met Tomcat's 404 first: the subscription was gone
        assert emit.events.index(gap) < emit.events.index(telephony(emit, "oxe70100")[-1])


async def test_a_keepalive_answered_503_does_not_end_the_session() -> None:
    emit = MemoryEmit()
    async with O2GSimulator(agents=1, session_ttl=1.0) as sim, running(make_source(sim), emit):
        await publish_and_expect(sim, emit, ["k1"])
        sim.fail_next("/sessions/keepalive", status=503, count=2)
        await until(
            lambda: [r.status for r in sim.requests if r.path.endswith("/keepalive")][-3:] == [503, 503, 204],
            timeout=3,
        )
        await publish_and_expect(sim, emit, ["k2"])
        assert logins(sim) == 1
        assert [r.path for r in sim.requests if r.method == "DELETE"] == []  # nothing deleted
        assert gaps(emit) == []


async def test_the_source_is_retrying_while_its_channel_is_being_reopened() -> None:
    emit = MemoryEmit()
    async with O2GSimulator(agents=1) as sim:
        source = make_source(sim, delay=0.02)
        async with running(source, emit):
            await publish_and_expect(sim, emit, ["h1"])
            assert source.deps.component.state is ComponentState.RUNNING
            sim.fail_next("/OTEvents", status=503, count=FOREVER)
            sim.close_channels()
            await until(lambda: source.deps.component.state is ComponentState.RETRYING)
            assert "503" in source.deps.component.detail
            sim.clear_faults()
            await until(lambda: source.deps.component.state is ComponentState.RUNNING)
            await publish_and_expect(sim, emit, ["h2"])
            assert logins(sim) == 1
