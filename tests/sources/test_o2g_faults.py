"""O2G faults of issue 15 (items 1-6) and TLS (issue 16 item 9), each against the simulator fault
that reproduces it: the source keeps its subscription, its pilots and its events.
"""

from __future__ import annotations

import logging

import anyio
import pytest

from streamd.errors import FatalError
from streamd.publish.memory import MemoryEmit
from streamd.sim.o2g import O2GSimulator
from streamd.sources.http import CertificateError
from streamd.telemetry import ComponentState
from tests.sources.calabrio_tls import CA_FILE, tls_front

from .o2g_helpers import (
    call,
    call_refs,
    logins,
    make_source,
    publish_and_expect,
    resubscribed_after,
    running,
    subscribed,
    until,
)

pytestmark = pytest.mark.anyio

FOREVER = 10**6


def channel_statuses(sim: O2GSimulator) -> list[int]:
    return [r.status for r in sim.requests if r.path == "/OTEvents"]


def deletes(sim: O2GSimulator) -> list[str]:
    return [r.path for r in sim.requests if r.method == "DELETE"]


# -- item 1: a failed reopen keeps the subscription ----------------------------------------------


async def test_a_reopen_answered_503_is_retried_on_the_same_subscription_without_loss() -> None:
    emit = MemoryEmit()
    async with O2GSimulator(agents=1) as sim, running(make_source(sim), emit):
        await publish_and_expect(sim, emit, ["o1"])
        (sid,) = sim.subscriptions()
        sim.fail_next("/OTEvents", status=503, count=3)
        sim.close_channels()  # the long poll ends; its reopens are answered 503 three times
        sim.publish(call("o2"), call("o3"))  # O2G queues them for the subscription meanwhile
        await until(lambda: call_refs(emit) == ["o1", "o2", "o3"])
        assert channel_statuses(sim) == [200, 503, 503, 503, 200]
        assert sim.subscriptions() == [sid]
        assert (logins(sim), deletes(sim)) == (1, [])  # same session, nothing deleted


async def test_a_channel_not_reopened_within_the_window_is_given_up_and_subscribed_anew() -> None:
    emit = MemoryEmit()
    async with (
        O2GSimulator(agents=1, reopen_window=0.3) as sim,
        running(make_source(sim, delay=0.02, reopen_window=0.3), emit),
    ):
        await publish_and_expect(sim, emit, ["w1"])
        sim.fail_next("/OTEvents", status=503, count=FOREVER)
        sim.close_channels()
        await until(lambda: not sim.subscriptions())  # O2G closed it: unread for its "minute"
        sim.clear_faults()
        await until(lambda: bool(sim.subscriptions()))
        await publish_and_expect(sim, emit, ["w2"])
        assert call_refs(emit) == ["w1", "w2"]


async def test_a_channel_the_active_server_cannot_reopen_moves_the_source_to_the_other_one() -> None:
    emit = MemoryEmit()
    async with O2GSimulator(agents=1) as primary, O2GSimulator(agents=1) as secondary:
        source = make_source(primary, delay=0.01, secondary_url=secondary.url, reopen_window=0.2)
        async with running(source, emit):
            await publish_and_expect(primary, emit, ["p1"])
            primary.fail_next("/OTEvents", status=503, count=FOREVER)  # its REST API still answers
            primary.close_channels()
            await until(lambda: bool(secondary.subscriptions()))
            await publish_and_expect(secondary, emit, ["s1"])
        assert call_refs(emit) == ["p1", "s1"]


# -- item 2: only empty channels count -------------------------------------------------------------


async def test_channels_that_fail_after_delivering_events_do_not_count_as_empty() -> None:
    emit = MemoryEmit()
    async with O2GSimulator(agents=1) as sim, running(make_source(sim), emit):
        await publish_and_expect(sim, emit, ["e0"])
        for i in range(1, 5):  # four ordinary network errors in a row, each after an event
            sim.cut_next_event(after=1)
            sim.publish(call(f"e{i}a"), call(f"e{i}b"))
            await until(lambda i=i: f"e{i}b" in call_refs(emit))
        assert call_refs(emit) == ["e0", *(f"e{i}{x}" for i in range(1, 5) for x in "ab")]
        assert (logins(sim), deletes(sim)) == (1, [])


@pytest.mark.parametrize(("empty", "sessions"), [(2, 1), (3, 2)])
async def test_channels_that_end_without_a_byte_give_the_session_up_after_three(
    empty: int, sessions: int
) -> None:
    emit = MemoryEmit()
    async with O2GSimulator(agents=1) as sim, running(make_source(sim), emit):
        await publish_and_expect(sim, emit, ["n1"])
        sim.end_next_channels(empty)
        sim.close_channels()
        await until(lambda: channel_statuses(sim).count(200) >= 2 + empty)
        await publish_and_expect(sim, emit, ["n2"])
        assert logins(sim) == sessions


# -- item 3: a 404 while O2G restarts is transient, and the secondary is tried ---------------------


async def test_tomcat_404s_while_o2g_redeploys_are_waited_out() -> None:
    emit = MemoryEmit()
    async with O2GSimulator(agents=1) as sim:
        source = make_source(sim, delay=0.01)
        async with running(source, emit):
            await publish_and_expect(sim, emit, ["d1"])
            sim.set_deploying()  # a restart: sessions gone, Tomcat answers 404 for a while
            await until(lambda: [r.status for r in sim.requests if r.path == "/api/rest"].count(404) >= 3)
            sim.set_deploying(False)
            await publish_and_expect(sim, emit, ["d2"])
            assert source.deps.component.state is ComponentState.RUNNING
        assert logins(sim) == 2


async def test_a_404_on_reconnect_tries_the_secondary() -> None:
    emit = MemoryEmit()
    async with O2GSimulator(agents=1) as primary, O2GSimulator(agents=1) as secondary:
        async with running(make_source(primary, secondary_url=secondary.url), emit):
            await publish_and_expect(primary, emit, ["p1"])
            primary.set_deploying()
            await publish_and_expect(secondary, emit, ["s1"])
        assert call_refs(emit) == ["p1", "s1"]


async def test_a_404_on_the_very_first_connection_is_a_wrong_url() -> None:
    async with O2GSimulator(agents=1) as sim:
        sim.fail_next("/api/rest", status=404, count=FOREVER, error="tomcat")
        with anyio.fail_after(2), pytest.raises(FatalError, match="discovery: HTTP 404"):
            await make_source(sim).run(MemoryEmit())


# -- item 4: pilot monitoring -----------------------------------------------------------------------


async def test_pilots_are_monitored_and_subscribed_by_number_without_a_snapshot() -> None:
    emit = MemoryEmit()
    async with O2GSimulator(agents=1, pilots=3) as sim:
        source = make_source(sim, snapshot=False, packages=["pilot", "rsi", "agent"])
        async with running(source, emit):
            pilots = ["60141", "60142", "60143"]
            assert sim.monitored_pilots == set(pilots)
            assert sim.filters() == [
                [
                    {"names": ["pilot"], "ids": pilots},
                    {"names": ["rsi"], "ids": pilots},
                    {"names": ["agent"], "ids": ["*"]},
                ]
            ]
            await publish_and_expect(sim, emit, ["m1", "m2"], pilot="60143")
        assert not [e for e in emit.events if e.snapshot]


async def test_a_failing_node_or_pilot_does_not_stop_the_monitoring_of_the_others() -> None:
    emit = MemoryEmit()
    async with O2GSimulator(agents=1, pilots=6, nodes=2) as sim:
        # node 1: 60141, 60143, 60145; node 2: 60142, 60144, 60146
        sim.fail_next("/acd/2/pilots", status=403, count=FOREVER, error="NOT_ALLOWED")
        sim.fail_next("/pilotmonitoring/60143", status=403, count=FOREVER, error="NOT_ALLOWED")
        sim.fail_next("/pilotmonitoring/60145", status=503, count=2)
        async with running(make_source(sim, delay=0.01), emit):
            await until(lambda: sim.monitored_pilots == {"60141", "60145"})  # 60145 retried
            assert sim.filters()[0][1] == {"names": ["pilot"], "ids": ["60141", "60143", "60145"]}
            await publish_and_expect(sim, emit, ["a"], pilot="60141")
            await publish_and_expect(sim, emit, ["b"], pilot="60145")
            snapshots = {e.key for e in emit.events if e.type == "o2g.pilot.PilotSnapshot"}
            assert snapshots == {"pbx1:60141", "pbx1:60143", "pbx1:60145"}
        assert logins(sim) == 1


async def test_a_server_older_than_2_7_2_gets_the_node_form_of_pilot_monitoring() -> None:
    emit = MemoryEmit()
    async with O2GSimulator(agents=1, legacy=True) as sim, running(make_source(sim), emit):
        assert sim.monitored_pilots == {"60141", "60142"}
        monitoring = [
            (r.path.rsplit("pilotmonitoring/", 1)[1], r.status)
            for r in sim.requests
            if "pilotmonitoring" in r.path
        ]
        assert monitoring == [("60141", 404), ("1/60141", 204), ("1/60142", 204)]
        await publish_and_expect(sim, emit, ["l1"], pilot="60142")


# -- item 6 ---------------------------------------------------------------------------------------


async def test_a_subscription_gone_again_later_is_recreated_each_time() -> None:
    emit = MemoryEmit()
    async with O2GSimulator(agents=1) as sim, running(make_source(sim), emit):
        for i in range(3):
            await resubscribed_after(sim, sim.drop_subscriptions)
            await publish_and_expect(sim, emit, [f"g{i}"])
        assert logins(sim) == 1  # never "gone again right after subscribing": no new session


async def test_what_the_guide_advises_against_is_accepted_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="streamd.sources.o2g")
    emit = MemoryEmit()
    async with O2GSimulator(agents=1) as sim:
        source = make_source(
            sim, subscription_timeout=5, packages=["pilot", "system"], names={"system": ["OnServerStart"]}
        )
        async with running(source, emit):
            await subscribed(sim)
            assert sim.filters()[0][1] == {"names": ["OnServerStart"]}
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [
        "o2g pbx1: subscription_timeout 5 min: the O2G guide says 10 minutes minimum (004 L2116), its"
        " model 2 (004 L2395); a server may refuse or raise it",
        "o2g pbx1: names.system OnServerStart: O2G sends it only to a webhook (004 L8950)",
    ]


# -- TLS (issue 16 item 9) ------------------------------------------------------------------------


async def test_an_untrusted_certificate_fails_the_source_with_its_cause_at_once() -> None:
    async with O2GSimulator(agents=1, scheme="https") as sim, tls_front(sim.url) as url:
        source = make_source(sim, url=url)
        with anyio.fail_after(2), pytest.raises(CertificateError, match="TLS certificate not trusted"):
            await source.run(MemoryEmit())
        assert source.deps.component.state is ComponentState.FAILED
        assert sim.requests == []  # never got past the handshake, and was not retried


async def test_the_ca_file_makes_the_certificate_trusted_end_to_end() -> None:
    emit = MemoryEmit()
    async with O2GSimulator(agents=1, scheme="https") as sim, tls_front(sim.url) as url:
        async with running(make_source(sim, url=url, ca_file=str(CA_FILE)), emit):
            await publish_and_expect(sim, emit, ["t1"])
        assert {r.path for r in sim.requests} >= {"/api/rest", "/OTEvents"}


async def test_verification_off_works_with_one_warning_however_many_sessions(
    caplog: pytest.LogCaptureFixture,
) -> None:
    emit = MemoryEmit()
    async with O2GSimulator(agents=1, scheme="https") as sim, tls_front(sim.url) as url:
        async with running(make_source(sim, url=url, verify_tls=False, allow_insecure_tls=True), emit):
            await resubscribed_after(sim, sim.expire_sessions)  # a second session
            await publish_and_expect(sim, emit, ["v1"])
        assert logins(sim) == 2
    off = [r for r in caplog.records if "verification is OFF" in r.getMessage()]
    assert [r.getMessage() for r in off] == [
        "o2g pbx1: TLS certificate verification is OFF (verify_tls: false): anyone on the path can"
        " read and change the traffic"
    ]
