"""The Alvaria source against the simulator on loopback: snapshots, diffs, tokens, limits, faults."""

from __future__ import annotations

import email.utils
import itertools
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import orjson
import pytest
from pydantic import TypeAdapter

from streamd.errors import AuthError
from streamd.events import State
from streamd.publish.encoding import encode
from streamd.publish.memory import MemoryEmit
from streamd.schemas import event_models
from streamd.sim.alvaria import AlvariaSimulator, Fault, LoggedRequest, error, query_of, where
from streamd.sources.alvaria.config import AlvariaSourceConfig
from streamd.sources.alvaria.source import AlvariaSource
from streamd.telemetry import ComponentState
from tests.helpers import SleepingClock, running, source_deps, until

pytestmark = pytest.mark.anyio


def fake_clock() -> SleepingClock:
    """Shared by the simulator (token expiry, request log) and the source (poller, auth)."""
    return SleepingClock(1_800_000_000.0, pause=0.001)  # each sleep lets the other tasks (and the server) run


def make_source(sim: AlvariaSimulator, clock: SleepingClock | None = None, **overrides: Any) -> AlvariaSource:
    overrides.setdefault("timeout", "2s")  # tiny test intervals must not turn a loaded CI box into timeouts
    cfg = AlvariaSourceConfig.model_validate(sim.source_config("cloud1", **overrides))
    if clock is None:
        deps = source_deps("cloud1", delays=lambda: itertools.repeat(0))
        return AlvariaSource(cfg, deps, jitter=0)
    deps = source_deps("cloud1", delays=lambda: itertools.repeat(0), sleep=clock.sleep)
    return AlvariaSource(cfg, deps, clock=clock, sleep=clock.sleep, jitter=0)


async def until_emitted(predicate: Any, emit: MemoryEmit, timeout: float = 5.0) -> None:
    """Wait until ``predicate()`` holds, re-checking whenever ``emit`` receives events."""
    with anyio.fail_after(timeout):
        while not predicate():
            await emit.wait_for(len(emit.events) + 1, timeout=timeout)


async def until_log(sim: AlvariaSimulator, predicate: Any, timeout: float = 5.0) -> None:
    await until(lambda: predicate(sim.log.entries), timeout)


def after(log: list[LoggedRequest], entry: LoggedRequest, query: str) -> LoggedRequest:
    later = log[log.index(entry) + 1 :]
    return next(r for r in later if query_of(r) == query)


async def test_end_to_end_snapshot_then_only_real_changes() -> None:
    async with AlvariaSimulator(agents=6, auto_advance=False) as sim:
        emit = MemoryEmit()
        source = make_source(sim, interval="50ms", refresh_every="1h")
        async with running(source, emit):
            snapshot_types = {f"alvaria.{q}.Row" for q in sim.source_config()["queries"]}
            await until_emitted(lambda: snapshot_types <= {e.type for e in emit.events}, emit)
            assert all(e.snapshot for e in emit.events if e.type.endswith(".Row"))
            # Let every query poll again: nothing changed, so nothing is published but the queues'
            # ticking longest wait (issue 21 item 4).
            polls = len(sim.log.entries)
            await until_log(sim, lambda log: len(log) >= polls + 10)
            quiet = len(emit.events)
            # at least one more channelActivity poll's ticking metric (on a loaded machine ten
            # more requests may all be the other queries'), and ten more requests
            await until_emitted(lambda: len(emit.events) > quiet, emit)
            await until_log(sim, lambda log: len(log) >= polls + 20)
            ticking = {(e.type, e.data.metric) for e in emit.events[quiet:]}
            assert ticking == {("streamd.queue.Metric", "longest_wait_seconds")}

            sim.world.set_state("agent00001", "active", now=sim.clock())
            await until_emitted(lambda: emit.of_type("alvaria.userActivity.RowChanged"), emit)
            (changed,) = emit.of_type("alvaria.userActivity.RowChanged")
            assert {"stateId", "stateName", "interactionCount"} <= set(changed.data["changed"])
            assert changed.data["previous"]["stateId"] == "idle"
            assert changed.key == "cloud1:team1:agent00001"
            assert not changed.snapshot
            await until_emitted(lambda: emit.of_type("alvaria.teamActivity.RowChanged"), emit)
            await until_emitted(lambda: emit.of_type("alvaria.channelActivity.RowChanged"), emit)
            busy = [e for e in emit.of_type("streamd.agent.State") if e.data.state is State.BUSY]
            assert [e.data.agent_id for e in busy] == ["agent00001"]

            sim.world.set_state("agent00002", "loggedoff", now=sim.clock())
            await until_emitted(lambda: emit.of_type("alvaria.presence.RowRemoved"), emit)
            await until_emitted(lambda: emit.of_type("alvaria.userActivity.RowRemoved"), emit)
            logged_out = [
                e.data for e in emit.of_type("streamd.agent.State") if e.data.state is State.LOGGED_OUT
            ]
            assert [s.agent_id for s in logged_out] == ["agent00002"]
        assert max(sim.max_in_flight.values()) <= 2  # two teams at once at most, per query
        assert {r.status for r in sim.log.entries} == {200}


async def test_full_snapshot_again_every_refresh_every() -> None:
    clock = fake_clock()
    async with AlvariaSimulator(agents=3, auto_advance=False, clock=clock) as sim:
        emit = MemoryEmit()
        source = make_source(sim, clock, queries=["presence"], interval="1s", refresh_every="10s")
        async with running(source, emit):
            await until_emitted(lambda: len(emit.of_type("alvaria.presence.Row")) >= 6, emit)
        rows = emit.of_type("alvaria.presence.Row")
        first, second = rows[0].data["observed_at"], rows[3].data["observed_at"]
        assert len({e.id for e in rows}) == len(rows)
        polls = [r.at for r in sim.requests("presence")]
        snapshot_polls = [t for t in polls if t - polls[0] in (0.0, 10.0)]
        assert len(snapshot_polls) == 2  # one at start, one refresh_every later; none in between
        assert second > first


def in_six_seconds() -> str:
    """An HTTP-date Retry-After 6 s from now."""
    return email.utils.format_datetime(datetime.now(UTC) + timedelta(seconds=6), usegmt=True)


@pytest.mark.parametrize(
    ("retry_after", "at_least"),
    [
        pytest.param(lambda: "7", 7.0, id="seconds"),
        pytest.param(in_six_seconds, 4.0, id="http-date"),  # 6 s minus date rounding
        pytest.param(lambda: None, 5.0, id="absent"),  # a 429 without Retry-After still backs off
    ],
)
async def test_retry_after_is_respected(retry_after: Callable[[], str | None], at_least: float) -> None:
    clock = fake_clock()
    async with AlvariaSimulator(agents=2, clock=clock) as sim:
        sim.faults.add("userActivity", error(429, retry_after=retry_after()))
        emit = MemoryEmit()
        source = make_source(sim, clock, queries=["userActivity"], team_ids=["team1"], interval="1s")
        async with running(source, emit):
            await until_log(
                sim, lambda log: [r.status for r in log if query_of(r) == "userActivity"][:2] == [429, 200]
            )
        throttled = next(r for r in sim.log.entries if r.status == 429)
        assert after(sim.log.entries, throttled, "userActivity").at - throttled.at >= at_least


async def test_a_429_pauses_every_query_of_the_source() -> None:
    # Real time here: with a shared fake clock, the throttled query's own wait would move the clock.
    async with AlvariaSimulator(agents=2, auto_advance=False) as sim:
        emit = MemoryEmit()
        source = make_source(sim, queries=["userActivity", "presence"], team_ids=["team1"], interval="50ms")
        async with running(source, emit):
            sim.faults.add("userActivity", error(429, retry_after="1"))
            await until_log(sim, lambda log: any(r.status == 429 for r in log))
            throttled = next(r for r in sim.log.entries if r.status == 429)
            await until_log(
                sim,
                lambda log: (
                    {query_of(r) for r in log[log.index(throttled) + 1 :]} == {"userActivity", "presence"}
                ),
            )
        later = sim.log.entries[sim.log.entries.index(throttled) + 1 :]
        early = [r for r in later if r.at < throttled.at + 1.0]
        assert len(early) <= 1  # presence paused too (one quota per key); at most one was already in flight
        assert all(query_of(r) == "presence" for r in early)


async def test_5xx_and_408_burst_is_survived() -> None:
    async with AlvariaSimulator(agents=4, auto_advance=False) as sim:
        for status in (500, 503, 408, 502, 500, 504, 503):
            sim.faults.add("userActivity", error(status))
        emit = MemoryEmit()
        source = make_source(sim, queries=["userActivity"], interval="20ms")
        async with running(source, emit):
            await until_emitted(lambda: len(emit.of_type("streamd.agent.State")) == 4, emit)
            assert source.deps.component.state is ComponentState.RUNNING
        statuses = [r.status for r in sim.requests("userActivity")]
        assert statuses[:8] == [500, 503, 408, 502, 500, 504, 503, 200]


async def test_token_refreshed_before_expiry_without_a_401() -> None:
    clock = fake_clock()
    async with AlvariaSimulator(agents=2, clock=clock, token_ttl=20) as sim:
        emit = MemoryEmit()
        source = make_source(sim, clock, queries=["presence"], interval="1s")
        async with running(source, emit):
            await until_log(
                sim,
                lambda log: (
                    len({r.headers.get("authorization") for r in log if query_of(r) == "presence"}) >= 3
                ),
            )
        assert 401 not in {r.status for r in sim.log.entries}
        tokens = sim.requests("token")
        assert tokens[1].at - tokens[0].at == pytest.approx(10.0, abs=1.0)  # 20 s life, margin 10 s


async def test_revoked_token_is_refreshed_once_on_401() -> None:
    clock = fake_clock()
    async with AlvariaSimulator(agents=2, clock=clock, token_ttl=3600) as sim:
        emit = MemoryEmit()
        source = make_source(sim, clock, queries=["presence"], interval="1s")
        async with running(source, emit):
            await until_log(sim, lambda log: len(log) >= 3)
            sim.revoke_tokens()
            await until_log(
                sim,
                lambda log: (
                    [r.status for r in log if query_of(r) == "presence"][-1:] == [200]
                    and 401 in {r.status for r in log}
                ),
            )
            await until_log(sim, lambda log: query_of(log[-1]) == "presence" and log[-1].status == 200)
        sequence = [(query_of(r), r.status) for r in sim.log.entries]
        i = sequence.index(("presence", 401))
        assert sequence[i : i + 3] == [("presence", 401), ("token", 200), ("presence", 200)]
        assert source.deps.component.state is ComponentState.RUNNING


async def test_expired_token_on_the_server_is_refreshed() -> None:
    async with AlvariaSimulator(agents=2, token_ttl=3600) as sim:
        emit = MemoryEmit()
        source = make_source(sim, queries=["presence"], interval="20ms")
        async with running(source, emit):
            await until_log(sim, lambda log: len(log) >= 3)
            sim.expire_tokens()
            await until_log(sim, lambda log: len([r for r in log if query_of(r) == "token"]) >= 2)
            await until_log(sim, lambda log: log[-1].status == 200 and query_of(log[-1]) == "presence")
        assert [r.status for r in sim.requests("presence")].count(401) == 1


async def test_wrong_credentials_stop_the_source_with_one_clear_line() -> None:
    async with AlvariaSimulator(agents=2) as sim:
        source = make_source(sim, queries=["presence"], client_secret="wrong")
        with anyio.fail_after(5), pytest.raises(AuthError, match="rejected client 'streamd'"):
            await source.run(MemoryEmit())
        assert [query_of(r) for r in sim.log.entries] == ["token"]


async def test_unknown_team_is_skipped_and_others_still_polled(caplog: pytest.LogCaptureFixture) -> None:
    async with AlvariaSimulator(agents=4, auto_advance=False) as sim:
        emit = MemoryEmit()
        source = make_source(sim, queries=["userActivity"], team_ids=["nope", "team1"], interval="20ms")
        async with running(source, emit):
            await until_emitted(lambda: emit.of_type("alvaria.userActivity.Row"), emit)
            polls = len(sim.requests("userActivity"))
            await until_log(
                sim, lambda log: len([r for r in log if query_of(r) == "userActivity"]) >= polls + 6
            )
        assert {e.data["scope"] for e in emit.of_type("alvaria.userActivity.Row")} == {"team1"}
        warnings = [r for r in caplog.records if "not found" in r.getMessage()]
        assert len(warnings) == 1  # a transition, not a line per poll
        assert (("userActivity", 404)) in {(query_of(r), r.status) for r in sim.log.entries}


async def test_slow_answers_never_overlap_for_one_query() -> None:
    async with AlvariaSimulator(agents=2, auto_advance=False) as sim:
        sim.faults.add("userActivity", error(503, delay=0.3))
        sim.faults.add("userActivity", error(503, delay=0.2))
        emit = MemoryEmit()
        source = make_source(sim, queries=["userActivity"], team_ids=["team1"], interval="50ms", timeout="1s")
        async with running(source, emit):
            await until_emitted(lambda: emit.of_type("alvaria.userActivity.Row"), emit)
        assert sim.max_in_flight["userActivity"] == 1


async def test_malformed_body_is_dead_lettered_and_the_source_keeps_going() -> None:
    async with AlvariaSimulator(agents=2, auto_advance=False) as sim:
        sim.faults.add("presence", Fault(200, body=b"<html>maintenance</html>"))
        sim.faults.add("presence", Fault(200, body=b'{"users": 5}'))
        emit = MemoryEmit()
        source = make_source(sim, queries=["presence"], interval="20ms")
        async with running(source, emit):
            await until_emitted(lambda: emit.of_type("alvaria.presence.Row"), emit)
        dead = [e.data for e in emit.events if e.topic == "deadletter"]
        assert [d.error_type for d in dead] == ["invalid_json", "invalid_body"]
        assert dead[0].raw == "<html>maintenance</html>"


async def test_demo_hook_yields_a_config_block_the_daemon_accepts() -> None:
    from streamd.config import Config
    from streamd.sim.alvaria import demo

    async with demo(4) as block:
        config = Config.model_validate({"kafka": {"bootstrap_servers": "embedded"}, "sources": [block]})
        (source_config,) = config.sources
        assert isinstance(source_config, AlvariaSourceConfig)
        assert len(source_config.enabled_queries()) == 5
        source = AlvariaSource(source_config, source_deps("alvaria1"), jitter=0)
        emit = MemoryEmit()
        async with running(source, emit):  # ready = every query polled once
            assert {e.topic for e in emit.events} >= {f"alvaria.{q}" for q in block["queries"]}
    for event in emit.events:  # every Kafka value matches the schema `streamd schema --events` prints
        record = encode(event, "streamd.")
        TypeAdapter(event_models()[event.type]).validate_json(record.value)


async def test_one_failing_query_does_not_make_the_source_state_flap(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level("INFO", logger="streamd")
    async with AlvariaSimulator(agents=2, auto_advance=False) as sim:
        sim.faults.add("userActivity", error(503), times=30)
        emit = MemoryEmit()
        source = make_source(sim, queries=["userActivity", "presence"], interval="10ms")
        async with running(source, emit):
            await until_emitted(lambda: emit.of_type("alvaria.userActivity.Row"), emit)
            assert source.deps.component.state is ComponentState.RUNNING
        failures = [i for i, r in enumerate(sim.log.entries) if r.status == 503]
        during = sim.log.entries[failures[0] : failures[-1]]
        assert any(query_of(r) == "presence" and r.status == 200 for r in during)  # presence kept polling
    transitions = [r.getMessage() for r in caplog.records if r.getMessage().startswith("source cloud1:")]
    assert [t.split(": ", 1)[1].split(" (")[0] for t in transitions] == [
        "starting -> retrying",
        "retrying -> running",
    ]
    assert "userActivity: alvaria GET userActivity team1: HTTP 503" in transitions[0]


async def test_a_deviating_row_is_published_and_only_a_keyless_row_is_dead_lettered_once() -> None:
    rows = [
        {"userId": "u1", "teamId": "team1", "stateId": "idle", "interactionCount": 0},
        {"userId": "u2", "teamId": "team1", "stateId": "idle", "interactionCount": "many"},
        {"teamId": "team1", "stateId": "idle"},
    ]
    body = orjson.dumps({"kind": "via#queryDataList", "totalItems": 3, "rows": rows})
    async with AlvariaSimulator(agents=2, auto_advance=False) as sim:
        sim.faults.add("userActivity", Fault(200, body=body), times=3)
        emit = MemoryEmit()
        source = make_source(sim, queries=["userActivity"], team_ids=["team1"], interval="20ms")
        async with running(source, emit):
            await until_log(sim, lambda log: len([r for r in log if query_of(r) == "userActivity"]) >= 3)
            await until_emitted(
                lambda: emit.of_type("alvaria.userActivity.RowRemoved"), emit
            )  # the real rows came back
        dead = [e.data for e in emit.events if e.topic == "deadletter"]
        assert [d.error_type for d in dead] == ["missing_key"]  # once, not once per poll
        assert orjson.loads(dead[0].raw or "") == rows[2]
        first = emit.of_type("alvaria.userActivity.Row")[:2]
        assert [e.data["row"]["userId"] for e in first] == ["u1", "u2"]
        assert [e.deviations for e in first] == [(), ("$.row.interactionCount",)]
        assert first[1].data["row"]["interactionCount"] == "many"
        states = [e.data for e in emit.of_type("streamd.agent.State")]
        assert {"u1", "u2"} <= {s.agent_id for s in states}  # the canonical state still flows for u2


def hiding(hidden: set[str], **kwargs: Any) -> AlvariaSimulator:
    """A simulator answering 403 for the teams in ``hidden``, as Alvaria does for a team the client
    may not see."""
    sim = AlvariaSimulator(**kwargs)
    for team in hidden:
        for query in ("teamActivity", "userActivity"):
            sim.faults.add(where(query, team), Fault(403, b'{"message": "Forbidden"}'), times=None)
    return sim


async def test_a_query_refused_for_good_fails_alone_and_the_others_go_on() -> None:
    async with hiding({"team1", "team2"}, agents=4, auto_advance=False) as sim:
        block = sim.source_config(
            "cloud1", queries=["userActivity", "presence"], interval="20ms", timeout="2s"
        )
        deps = source_deps(
            "cloud1", delays=lambda: itertools.repeat(0), failed_retry=3600
        )  # a daemon's policy
        source = AlvariaSource(AlvariaSourceConfig.model_validate(block), deps, jitter=0)
        emit = MemoryEmit()
        async with running(source, emit, start_timeout=5):
            await until(lambda: source.deps.component.jobs["userActivity"].state is ComponentState.FAILED)
            polls = len(sim.requests("presence"))
            await until_log(sim, lambda log: len([r for r in log if query_of(r) == "presence"]) >= polls + 5)
            component = source.deps.component
            assert component.state is ComponentState.RETRYING  # partly running: its other job polls on
            assert component.jobs["presence"].state is ComponentState.RUNNING
            assert component.detail.startswith(
                "userActivity failed: alvaria GET userActivity: HTTP 403 for every"
            )
        assert emit.of_type("alvaria.presence.Row")
        assert len(sim.requests("userActivity")) == 2  # one cycle (both teams); the next try is an hour away


async def test_team_not_visible_to_the_client_is_skipped_and_others_still_polled(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with hiding({"team1"}, agents=4, auto_advance=False) as sim:
        emit = MemoryEmit()
        teams = sorted(sim.world.team_ids)
        assert teams == ["team1", "team2"]
        source = make_source(sim, queries=["userActivity"], team_ids=teams, interval="20ms")
        async with running(source, emit):
            await until_emitted(lambda: emit.of_type("alvaria.userActivity.Row"), emit)
            polls = len(sim.requests("userActivity"))
            await until_log(
                sim, lambda log: len([r for r in log if query_of(r) == "userActivity"]) >= polls + 6
            )
            assert source.deps.component.state is ComponentState.RUNNING
        assert {e.data["scope"] for e in emit.of_type("alvaria.userActivity.Row")} == {"team2"}
        warnings = [r for r in caplog.records if "not visible" in r.getMessage()]
        assert len(warnings) == 1  # a transition, not a line per poll
        assert (("userActivity", 403)) in {(query_of(r), r.status) for r in sim.log.entries}


async def test_every_scope_of_a_query_refused_is_fatal() -> None:
    async with hiding({"team1", "team2"}, agents=4, auto_advance=False) as sim:
        source = make_source(sim, queries=["userActivity"], team_ids=["team1", "team2"], interval="20ms")
        with anyio.fail_after(5), pytest.raises(AuthError, match="HTTP 403 for every scope"):
            await source.run(MemoryEmit())
