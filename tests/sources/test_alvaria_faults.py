"""Alvaria faults found by reading seed 003 against the code (issue 15 items 12-14), each against the
simulator's fault that reproduces it: one failing or silent scope, concurrent token refreshes,
presence per worktype, rows without their scope field, the vendor's error in every refusal line."""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from streamd.events import State
from streamd.publish.memory import MemoryEmit
from streamd.sim.alvaria import TOKEN_PATH, AlvariaSimulator, Fault, error, query_of, scope_of, where
from streamd.sources.alvaria.config import AlvariaSourceConfig
from streamd.sources.alvaria.source import AlvariaSource
from streamd.telemetry import ComponentState
from tests.helpers import SleepingClock, running, source_deps, until
from tests.sources.calabrio_tls import CA_FILE, tls_front

pytestmark = pytest.mark.anyio

STORE_DOWN = error(503, code=5031, message="reporting store rebuilding")


def make_source(
    sim: AlvariaSimulator, clock: SleepingClock | None = None, *, scope_delays: Any = None, **overrides: Any
) -> AlvariaSource:
    overrides.setdefault("timeout", "2s")
    cfg = AlvariaSourceConfig.model_validate(sim.source_config("cloud1", **overrides))
    sleep = {"sleep": clock.sleep} if clock is not None else {}
    deps = source_deps("cloud1", delays=lambda: itertools.repeat(0), **sleep)
    extra: dict[str, Any] = {"clock": clock, **sleep} if clock is not None else {}
    if scope_delays is not None:
        extra["scope_delays"] = scope_delays
    return AlvariaSource(cfg, deps, jitter=0, **extra)


def doubling(first: float) -> Iterator[float]:
    return (first * 2**n for n in itertools.count())


def scope_requests(sim: AlvariaSimulator, query: str, scope: str) -> list[float]:
    return [r.at for r in sim.requests(query) if scope_of(r) == scope]


def tokens_used(sim: AlvariaSimulator) -> set[str | None]:
    return {r.headers.get("authorization") for r in sim.log.entries if query_of(r) != "token"}


def states(emit: MemoryEmit, agent: str) -> list[State]:
    return [e.data.state for e in emit.of_type("streamd.agent.State") if e.data.agent_id == agent]


async def test_a_failing_scope_backs_off_alone_and_the_other_scopes_are_published(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="streamd")
    clock = SleepingClock(1_800_000_000.0, pause=0.001)
    async with AlvariaSimulator(agents=4, auto_advance=False, clock=clock) as sim:
        sim.faults.add(
            where("userActivity", "team1"), STORE_DOWN, times=None
        )  # one team's data is unavailable
        emit = MemoryEmit()
        source = make_source(
            sim, clock, queries=["userActivity"], interval="1s", scope_delays=lambda: doubling(3.0)
        )
        async with running(source, emit):
            await until(lambda: len(scope_requests(sim, "userActivity", "team2")) >= 12)
            assert source.deps.component.state is ComponentState.RUNNING
            sim.world.set_state("agent00002", "notready", now=clock.now)  # agent00002 is in team2
            await until(lambda: State.NOT_READY in states(emit, "agent00002"))
            sim.faults.clear(where("userActivity", "team1"))
            await until(lambda: emit.of_type("alvaria.userActivity.Row") and states(emit, "agent00001"))
        team1 = scope_requests(sim, "userActivity", "team1")
        gaps = [later - earlier for earlier, later in itertools.pairwise(team1)]
        assert len(gaps) >= 2
        assert gaps[0] >= 3.0
        assert gaps[1] >= 6.0
        team2 = scope_requests(sim, "userActivity", "team2")
        every = [later - earlier for earlier, later in itertools.pairwise(team2[:12])]
        assert every == pytest.approx([1.0] * 11)  # ...while team2 is polled every second
    lines = [r.getMessage() for r in caplog.records if "team1" in r.getMessage()]
    assert lines[0].endswith(
        "alvaria GET userActivity team1: HTTP 503 (code 5031, message 'reporting store rebuilding', "
        "detail 'reporting Service Unavailable reporting store rebuilding'); this scope backs off 3.0s alone"
    )
    assert next(r.levelname for r in caplog.records if "team1" in r.getMessage()) == "WARNING"
    assert any("team1 answers again" in line for line in lines)


async def test_a_scope_that_does_not_answer_in_time_stalls_nothing(caplog: pytest.LogCaptureFixture) -> None:
    async with AlvariaSimulator(agents=4, auto_advance=False) as sim:
        sim.faults.add(
            where("userActivity", "team1"), error(200, delay=3.0), times=None
        )  # an answer that never comes in time
        emit = MemoryEmit()
        source = make_source(sim, queries=["userActivity"], interval="50ms", timeout="200ms")
        async with running(source, emit, start_timeout=5):
            await until(
                lambda: {e.data["scope"] for e in emit.of_type("alvaria.userActivity.Row")} == {"team2"}
            )
            assert source.deps.component.state is ComponentState.RUNNING
            sim.faults.clear(where("userActivity", "team1"))
    assert "alvaria GET userActivity team1: no answer within 0.2s" in caplog.text


async def test_scopes_are_polled_at_the_same_time_up_to_scope_concurrency() -> None:
    for concurrency, expected in ((2, 2), (4, 3)):
        async with AlvariaSimulator(agents=6, teams=3, auto_advance=False) as sim:
            sim.latency = 0.1
            emit = MemoryEmit()
            source = make_source(
                sim, queries=["teamActivity"], interval="50ms", scope_concurrency=concurrency
            )
            async with running(source, emit, start_timeout=5):
                await until(lambda: len(sim.requests("teamActivity")) >= 6)
            assert sim.max_in_flight["teamActivity"] == expected


async def test_concurrent_calls_at_start_and_at_every_expiry_make_one_token_request() -> None:
    async with AlvariaSimulator(agents=4, auto_advance=False, token_ttl=2.0) as sim:  # refreshed after 1 s
        sim.token_latency = 0.2  # every query polls while the token is being fetched
        emit = MemoryEmit()
        source = make_source(sim, interval="50ms")
        async with running(source, emit, start_timeout=5):
            await until(lambda: len(tokens_used(sim)) >= 3)
        assert sim.max_in_flight["token"] == 1  # one refresh at a time; the other calls wait for it
        fetched = len(sim.requests("token"))
        assert {f"Bearer tok-{n}" for n in range(1, fetched)} <= tokens_used(sim)  # none fetched in vain
        assert 401 not in {r.status for r in sim.log.entries}


async def test_a_user_who_drops_off_one_worktype_is_not_logged_out_while_on_another() -> None:
    async with AlvariaSimulator(agents=4, auto_advance=False) as sim:
        wt1, wt2 = sim.world.work_type_ids
        assert sim.world.agents["agent00001"].work_types == {wt1, wt2}  # on both presence lists
        emit = MemoryEmit()
        source = make_source(
            sim, queries=["userActivity", "presence"], presence_work_type_ids=[wt1, wt2], interval="20ms"
        )
        async with running(source, emit):
            sim.world.unassign("agent00001", wt1)
            await until(lambda: emit.of_type("alvaria.presence.RowRemoved"))
            (removed,) = emit.of_type("alvaria.presence.RowRemoved")
            assert (removed.data["scope"], removed.data["key"]) == (wt1, "agent00001")
            polls = len(sim.requests("presence"))
            await until(lambda: len(sim.requests("presence")) >= polls + 6)
            assert State.LOGGED_OUT not in states(emit, "agent00001")

            sim.world.set_state("agent00001", "loggedoff", now=sim.clock())  # off every list now
            await until(lambda: State.LOGGED_OUT in states(emit, "agent00001"))
        assert states(emit, "agent00001").count(State.LOGGED_OUT) == 1


async def test_team_and_channel_rows_without_their_scope_field_are_keyed_by_the_polled_scope() -> None:
    async with AlvariaSimulator(agents=4, auto_advance=False) as sim:
        sim.omit("teamActivity", "teamId")
        sim.omit("channelActivity", "workTypeId")
        emit = MemoryEmit()
        source = make_source(sim, queries=["teamActivity", "channelActivity"], interval="20ms")
        async with running(source, emit):
            await until(lambda: len(emit.of_type("alvaria.teamActivity.Row")) == 2)
            await until(lambda: len(emit.of_type("alvaria.channelActivity.Row")) == 4)
        assert not [e for e in emit.events if e.topic == "deadletter"]
        assert {e.key for e in emit.of_type("alvaria.teamActivity.Row")} == {"cloud1:team1", "cloud1:team2"}
        assert {e.data["key"] for e in emit.of_type("alvaria.channelActivity.Row")} == {
            f"{wt}:{kind}"
            for wt in sim.world.work_type_ids
            for kind in ("inboundacd:voice", "inboundchat:chat")
        }
        queues = {e.data.queue_id for e in emit.of_type("streamd.queue.Metric")}
        assert {"team/team1", "team/team2", "worktype/wt1.104/inboundacd/voice"} <= queues


async def test_every_refused_request_names_what_alvaria_said(caplog: pytest.LogCaptureFixture) -> None:
    async with AlvariaSimulator(agents=2, auto_advance=False) as sim:
        emit = MemoryEmit()
        source = make_source(sim, queries=["userActivity"], team_ids=["nope", "team1"], interval="20ms")
        sim.faults.add(where("userActivity", "team1"), error(500, code=17, message="query engine restarted"))
        async with running(source, emit):
            await until(lambda: emit.of_type("alvaria.userActivity.Row"))
    lines = [r.getMessage() for r in caplog.records if r.name == "streamd.sources.alvaria"]
    assert any(
        "nope not found, skipped: alvaria GET userActivity nope: HTTP 404 (error 'Not Found')" in x
        for x in lines
    )
    assert any("team1: HTTP 500 (code 17, message 'query engine restarted'" in x for x in lines)


REFUSALS = [
    (where("userActivity", "team1"), error(429, retry_after="1"), "HTTP 429 (error 'Throttled')"),
    (where("userActivity", "team1"), error(408), "HTTP 408 (error 'Request Timeout')"),
    (
        where("userActivity", "team1"),
        error(503, code=5031, message="reporting store rebuilding"),
        "HTTP 503 (code 5031, message 'reporting store rebuilding', detail 'reporting Service Unavailable",
    ),
    (
        where("userActivity", "team1"),
        Fault(403, b'{"message": "Forbidden"}'),
        "team1 not visible to this client, skipped: alvaria GET userActivity team1: HTTP 403 "
        "(message 'Forbidden')",
    ),
    ("token", error(502, code=9, message="token service restarting"), "HTTP 502 (code 9, message 'token"),
]
"""(fault key, the simulator's refusal with the guide's ErrorResponse / ErrorResponseObj body, what
the source's log line must say)."""


@pytest.mark.parametrize(("key", "fault", "said"), REFUSALS, ids=lambda v: v if isinstance(v, str) else "")
async def test_each_refusal_logs_the_vendor_error_code_and_message_once(
    caplog: pytest.LogCaptureFixture, key: str, fault: Fault, said: str
) -> None:
    caplog.set_level(logging.DEBUG, logger="streamd")
    async with AlvariaSimulator(agents=2, auto_advance=False) as sim:
        sim.faults.add(key, fault)
        emit = MemoryEmit()
        source = make_source(sim, queries=["userActivity"], interval="20ms")

        def lines() -> list[str]:
            return [
                r.getMessage() for r in caplog.records if said in r.getMessage() and r.levelno >= logging.INFO
            ]

        async with running(source, emit):
            await until(lambda: lines() and emit.of_type("alvaria.userActivity.Row"))
    refused = [r for r in sim.log.entries if r.status == fault.status]
    assert len(refused) == 1
    assert len(lines()) == 1, lines()  # one line per refused request (repeats would be DEBUG)


async def test_delays_of_a_scope_come_from_its_own_backoff_not_the_queries() -> None:
    clock = SleepingClock(1_800_000_000.0, pause=0.001)
    async with AlvariaSimulator(agents=4, auto_advance=False, clock=clock) as sim:
        sim.faults.add(where("userActivity", "team1"), error(503, retry_after="20"))  # a 503 that says when
        emit = MemoryEmit()
        source = make_source(
            sim, clock, queries=["userActivity"], interval="1s", scope_delays=lambda: doubling(3.0)
        )
        async with running(source, emit):
            await until(lambda: len(scope_requests(sim, "userActivity", "team1")) >= 2)
        first, second = scope_requests(sim, "userActivity", "team1")[:2]
        assert second - first >= 20.0
        assert len(scope_requests(sim, "userActivity", "team2")) >= 20  # polled every second meanwhile


async def test_a_query_down_on_every_scope_is_retried_by_the_supervisor() -> None:
    async with AlvariaSimulator(agents=4, auto_advance=False) as sim:
        sim.faults.add("userActivity", STORE_DOWN, times=None)
        emit = MemoryEmit()
        source = make_source(sim, queries=["userActivity"], interval="20ms")
        async with running(source, emit, start_timeout=5):
            await until(lambda: len(sim.requests("userActivity")) >= 6)
            component = source.deps.component
            assert component.state is ComponentState.RETRYING
            assert "HTTP 503 (code 5031" in component.detail
            sim.faults.clear("userActivity")
            await until(lambda: len(emit.of_type("alvaria.userActivity.Row")) == 4)
            await until(lambda: source.deps.component.state is ComponentState.RUNNING)
        assert {scope_of(r) for r in sim.requests("userActivity")[:6]} == {"team1", "team2"}


# -- TLS (issue 16 item 9): the shared TlsSettings for the token endpoint and the queries alike ------


def tls_config(sim: AlvariaSimulator, front: str, **overrides: Any) -> AlvariaSourceConfig:
    block = sim.source_config("cloud1", queries=["presence"], interval="20ms", timeout="2s")
    block |= {"base_url": f"{front}/via/v2/organizations/{sim.org_id}", "token_url": front + TOKEN_PATH}
    return AlvariaSourceConfig.model_validate(block | overrides)


async def test_an_untrusted_certificate_fails_the_source_with_its_cause_and_is_not_retried_for_ever() -> None:
    async with AlvariaSimulator(agents=2, auto_advance=False) as sim, tls_front(sim.url) as front:
        deps = source_deps("cloud1", delays=lambda: itertools.repeat(0), failed_retry=3600)
        source = AlvariaSource(tls_config(sim, front), deps, jitter=0)
        async with running(source, MemoryEmit(), start_timeout=5):
            await until(lambda: source.deps.component.state is ComponentState.FAILED)
        assert "TLS certificate not trusted" in source.deps.component.detail
        assert sim.log.entries == []  # not one request got through


@pytest.mark.parametrize("tls", [{"ca_file": str(CA_FILE)}, {"verify_tls": False}])
async def test_tls_with_the_ca_file_or_verification_off(
    tls: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    async with AlvariaSimulator(agents=2, auto_advance=False) as sim, tls_front(sim.url) as front:
        emit = MemoryEmit()
        source = AlvariaSource(tls_config(sim, front, **tls), source_deps("cloud1"), jitter=0)
        async with running(source, emit, start_timeout=5):
            await until(lambda: len(emit.of_type("alvaria.presence.Row")) == 2)
        assert [query_of(r) for r in sim.log.entries[:2]] == ["token", "presence"]
    off = [r for r in caplog.records if "verification is OFF" in r.getMessage()]
    assert len(off) == (1 if tls == {"verify_tls": False} else 0)


async def test_presence_per_worktype_logons_carry_every_worktype_of_the_user() -> None:
    async with AlvariaSimulator(agents=4, auto_advance=False) as sim:
        wt1, wt2 = sim.world.work_type_ids
        emit = MemoryEmit()
        source = make_source(sim, queries=["presence"], presence_work_type_ids=[wt1, wt2], interval="20ms")
        async with running(source, emit):
            await until(lambda: len({e.data.agent_id for e in emit.of_type("streamd.agent.State")}) == 4)
    queues = {e.data.agent_id: e.data.queue_ids for e in emit.of_type("streamd.agent.State")}
    assert queues == {
        "agent00001": (f"worktype/{wt1}", f"worktype/{wt2}"),  # on both lists (a third of the agents)
        "agent00002": (f"worktype/{wt2}",),
        "agent00003": (f"worktype/{wt1}",),
        "agent00004": (f"worktype/{wt1}", f"worktype/{wt2}"),
    }


async def test_a_slow_token_and_a_slow_listing_do_not_fail_a_poll_that_is_in_time(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="streamd")
    async with AlvariaSimulator(agents=2, teams=1, auto_advance=False, token_ttl=4.0) as sim:
        sim.token_latency = sim.latency = 1.0  # each within the 1.6 s timeout; together past the cycle's
        emit = MemoryEmit()
        source = make_source(
            sim, queries=["userActivity"], team_ids=[], discover=["teams"], interval="2s", timeout="1.6s"
        )
        async with running(source, emit, start_timeout=10):
            await until(lambda: emit.of_type("alvaria.userActivity.Row"), timeout=15)
            await until(lambda: len(sim.requests("token")) >= 2, timeout=15)  # refreshed at expiry
            polls = len(sim.requests("userActivity"))
            await until(lambda: len(sim.requests("userActivity")) > polls, timeout=15)
            assert source.deps.component.state is ComponentState.RUNNING
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text
    assert len(sim.requests("teams")) == 1
    assert {r.status for r in sim.log.entries} == {200}
