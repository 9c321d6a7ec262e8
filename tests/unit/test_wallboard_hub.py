"""The wallboard state hub: bounds, sequence numbers, replay, filters, slow subscribers, and the
sources' states and freshness."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import anyio
import orjson
import pytest

from streamd.events import AgentState, QueueMetric, State, utcnow
from streamd.telemetry import ERRORS, ComponentState, Health
from streamd.wallboard.hub import (
    CLIENTS_DROPPED,
    EVICTED,
    MAX_SOURCES,
    FeedStatus,
    Filter,
    SourceStatus,
    StateHub,
    Subscription,
    encode_snapshot,
)

T0 = datetime(2026, 1, 1, 8, 0, tzinfo=UTC)


def agent(i: int | str, state: State = State.AVAILABLE, source: str = "s1", **kw: object) -> AgentState:
    return AgentState(vendor="test", source=source, agent_id=str(i), state=state, **kw)  # type: ignore[arg-type]


def metric(queue: str, name: str, value: float, source: str = "s1") -> QueueMetric:
    return QueueMetric(vendor="test", source=source, queue_id=queue, metric=name, value=value)


def test_updates_are_numbered_and_identical_values_are_noops() -> None:
    hub = StateHub()
    assert hub.update_agent(agent(1), observed=T0)
    assert hub.update_metric(metric("q1", "waiting_calls", 3))
    assert hub.seq == 2
    assert not hub.update_agent(agent(1), observed=T0 + timedelta(seconds=5))  # same state: keeps since
    assert not hub.update_metric(metric("q1", "waiting_calls", 3))
    assert hub.seq == 2
    assert hub.update_agent(agent(1, State.BUSY), observed=T0 + timedelta(seconds=9))
    assert hub.seq == 3
    assert hub.agents["s1:1"].since == T0 + timedelta(seconds=9)
    assert hub.event_id == f"{hub.epoch}.3"


def test_since_is_kept_while_the_state_does_not_change_and_vendor_since_wins() -> None:
    hub = StateHub()
    hub.update_agent(agent(1, State.NOT_READY, reason_code="lunch"), observed=T0)
    hub.update_agent(agent(1, State.NOT_READY, reason_code="break"), observed=T0 + timedelta(minutes=1))
    assert hub.agents["s1:1"].since == T0
    vendor_since = T0 - timedelta(hours=1)
    hub.update_agent(agent(1, State.BUSY, since=vendor_since), observed=T0 + timedelta(minutes=2))
    assert hub.agents["s1:1"].since == vendor_since


def test_bounded_least_recently_updated_evicted_and_counted() -> None:
    hub = StateHub(max_agents=3, max_metrics=2)
    before_a = EVICTED.labels("agent")._value.get()
    before_m = EVICTED.labels("metric")._value.get()
    for i in range(3):
        hub.update_agent(agent(i))
    hub.update_agent(agent(0, State.BUSY))  # 0 is now the most recently updated
    hub.update_agent(agent(3))
    assert list(hub.agents) == ["s1:2", "s1:0", "s1:3"]
    for q in "abc":
        hub.update_metric(metric(q, "waiting_calls", 1))
    assert list(hub.metrics) == ["s1:b:waiting_calls", "s1:c:waiting_calls"]
    assert EVICTED.labels("agent")._value.get() - before_a == 1
    assert EVICTED.labels("metric")._value.get() - before_m == 1
    evictions = [c for c in hub.since(f"{hub.epoch}.0") or [] if c.value is None]
    assert [c.key for c in evictions] == ["s1:1", "s1:a:waiting_calls"]


def test_replay_after_an_id_or_none_when_it_cannot() -> None:
    hub = StateHub(replay=3)
    assert hub.since(None) is None
    hub.update_agent(agent(1))
    mark = hub.event_id
    assert hub.since(mark) == []
    hub.update_agent(agent(2))
    hub.update_agent(agent(1, State.BUSY))
    missed = hub.since(mark)
    assert missed is not None
    assert [(c.seq, c.key) for c in missed] == [(2, "s1:2"), (3, "s1:1")]
    assert orjson.loads(missed[1].payload())["value"]["state"] == "busy"
    hub.update_agent(agent(3))
    hub.update_agent(agent(4))  # the buffer holds seq 3..5 now; after seq 1 means 2 is needed
    assert hub.since(mark) is None
    assert hub.since(f"{hub.epoch}.2") is not None
    assert hub.since("0000.1") is None  # another process's id
    assert hub.since(f"{hub.epoch}.99") is None  # from the future: a restart
    assert hub.since("garbage") is None


def test_remove_is_a_change_and_unknown_keys_are_not() -> None:
    hub = StateHub()
    hub.update_agent(agent(1))
    assert hub.remove("agent", "s1:1")
    assert not hub.remove("agent", "s1:1")
    assert hub.seq == 2
    assert hub.agents == {}


def test_filters_select_snapshot_entries() -> None:
    hub = StateHub()
    hub.update_agent(agent(1, queue_ids=("q1",)))
    hub.update_agent(agent(2, State.BUSY, queue_ids=("q2",)))
    hub.update_agent(agent(3, source="s2", queue_ids=("q1",)))
    hub.update_metric(metric("q1", "waiting_calls", 1))
    hub.update_metric(metric("q2", "waiting_calls", 2))

    def keys(flt: Filter) -> tuple[list[str], list[str]]:
        snap = hub.snapshot(flt)
        return [f"{a.source}:{a.agent_id}" for a in snap["agents"]], [m.queue_id for m in snap["metrics"]]

    assert keys(Filter.parse([("source", "s1")])) == (["s1:1", "s1:2"], ["q1", "q2"])
    assert keys(Filter.parse([("queue", "q1")])) == (["s1:1", "s2:3"], ["q1"])
    assert keys(Filter.parse([("state", "busy,available"), ("source", "s1")])) == (
        ["s1:1", "s1:2"],
        ["q1", "q2"],
    )
    assert keys(Filter.parse([("state", "busy")])) == (["s1:2"], ["q1", "q2"])
    assert keys(Filter.parse([("source", "s2"), ("source", "s1"), ("queue", "q2")])) == (["s1:2"], ["q2"])


@pytest.mark.anyio
async def test_a_filtered_subscriber_sees_an_agent_leave_its_filter_as_a_removal() -> None:
    hub = StateHub()
    with hub.subscribe(Filter.parse([("queue", "q1")])) as sub:
        await _filtered(hub, sub)
    assert hub.subscribers == 0


async def _filtered(hub: StateHub, sub: Subscription) -> None:
    hub.update_agent(agent(1, queue_ids=("q1",)))
    hub.update_agent(agent(2, queue_ids=("q2",)))  # never on this board: not sent
    hub.update_agent(agent(1, queue_ids=("q2",)))  # leaves the board: a removal
    hub.update_agent(agent(1, State.BUSY, queue_ids=("q2",)))  # still off the board: not sent
    got = []
    with anyio.fail_after(1):
        for _ in range(2):
            seq, payload = await sub.receive.receive()
            got.append((seq, orjson.loads(payload)))
    assert [(seq, d["key"], d["value"] is None) for seq, d in got] == [(1, "s1:1", False), (3, "s1:1", True)]
    with pytest.raises(anyio.WouldBlock):
        sub.receive.receive_nowait()


@pytest.mark.anyio
async def test_a_slow_subscriber_is_dropped_and_counted_without_blocking_the_hub() -> None:
    hub = StateHub()
    before = CLIENTS_DROPPED._value.get()
    with hub.subscribe(size=4) as slow, hub.subscribe(size=100) as fast:
        await _slow(hub, slow, fast, before)


async def _slow(hub: StateHub, slow: Subscription, fast: Subscription, before: float) -> None:
    for i in range(10):  # synchronous: if the hub waited for the slow client this would hang
        hub.update_agent(agent(i))
    assert slow.dropped
    assert not fast.dropped
    assert CLIENTS_DROPPED._value.get() - before == 1
    assert hub.subscribers == 1
    received = [seq async for seq, _ in slow.receive]  # what was buffered, then the end
    assert received == [1, 2, 3, 4]
    assert len([seq for seq, _ in [fast.receive.receive_nowait() for _ in range(10)]]) == 10
    hub.close()
    assert hub.subscribers == 0
    with pytest.raises(anyio.EndOfStream):
        await fast.receive.receive()


@pytest.mark.anyio
async def test_a_big_snapshot_is_encoded_in_slices_from_a_frozen_state() -> None:
    from streamd.publish.encoding import dumps
    from streamd.wallboard import hub as hub_module

    hub = StateHub()
    for i in range(5 * hub_module.SLICE + 7):
        hub.update_agent(agent(i, State.BUSY if i % 3 else State.AVAILABLE, queue_ids=("q1",)), observed=T0)
    hub.update_metric(metric("q1", "waiting_calls", 3))
    flt = Filter(states=frozenset({"available"}))
    frozen = hub.freeze(flt)
    yields = 0

    async def count_yields() -> None:
        nonlocal yields
        while True:
            await anyio.sleep(0)
            yields += 1

    async with anyio.create_task_group() as tg:
        tg.start_soon(count_yields)
        await anyio.sleep(0)
        hub.update_agent(agent(0, State.BUSY), observed=T0)  # after the freeze: not in it
        body = await hub_module.encode_snapshot(frozen)
        tg.cancel_scope.cancel()
    assert yields >= 5  # the loop ran between the slices
    expected = orjson.loads(dumps(hub.snapshot(flt)))
    got = orjson.loads(body)
    assert got["id"] == frozen.id != hub.event_id
    assert len(got["agents"]) == len(expected["agents"]) + 1  # agent 0 was still available then
    assert got["metrics"] == expected["metrics"]
    again = hub.freeze(flt)
    assert again.encoded is None  # a change since: encoded again
    await hub_module.encode_snapshot(again)
    cached = hub.freeze(flt)
    assert cached.encoded is not None  # nothing changed: clients reconnecting together share one
    assert orjson.loads(await hub_module.encode_snapshot(cached))["agents"] == expected["agents"]


def test_sources_are_published_with_their_freshness_at_most_every_few_seconds() -> None:
    hub = StateHub(stale_after=120.0, stale_after_per_source={"fast": 20.0})
    start = utcnow() - timedelta(minutes=5)
    assert hub.sync() == 0  # nothing heard of yet
    hub.touch("s1", start)
    hub.touch("s1", start - timedelta(seconds=30))  # an older record (another partition): ignored
    hub.touch("fast", start)
    assert hub.sync() == 2
    assert hub.sources["s1"] == SourceStatus(source="s1", last_update=start, stale_after=120.0)
    assert hub.sources["fast"].stale_after == 20.0
    seq = hub.seq
    assert hub.sync() == 0  # nothing new: no change, no sequence number
    hub.touch("s1", start + timedelta(seconds=4))  # within min(5 s, stale_after / 10): not yet worth a change
    hub.touch("fast", start + timedelta(seconds=2))  # stale_after / 10 = 2 s: it is
    assert hub.sync() == 1
    assert hub.sources["s1"].last_update == start
    assert hub.sources["fast"].last_update == start + timedelta(seconds=2)
    hub.touch("s1", start + timedelta(seconds=5))
    assert hub.sync() == 1
    assert hub.sources["s1"].last_update == start + timedelta(seconds=5)
    assert hub.seq == seq + 2
    change = hub.since(f"{hub.epoch}.{seq + 1}")
    assert change is not None
    assert orjson.loads(change[0].payload()) == {
        "seq": seq + 2,
        "kind": "source",
        "key": "s1",
        "value": {
            "source": "s1",
            "state": None,
            "detail": "",
            "last_update": (start + timedelta(seconds=5)).isoformat().replace("+00:00", "Z"),
            "stale_after": 120.0,
            "placement": "elsewhere",
            "replica": "",
        },
    }
    # a producer's clock ahead of ours: never in the future
    hub.touch("s1", utcnow() + timedelta(hours=1))
    hub.sync()
    last = hub.sources["s1"].last_update
    assert last is not None
    assert last <= utcnow()


def test_component_states_of_sources_and_the_feed_are_published_on_change() -> None:
    health = Health()
    pbx = health.add("pbx", "source")
    health.add("kafka", "publisher")
    health.add("rtdc", "sink")
    feed = health.add("wallboard", "feed")
    hub = StateHub()
    hub.touch("remote", utcnow())  # a source another daemon runs: data, no state
    assert hub.sync(health.components) == 3  # pbx, remote, the feed
    assert hub.sources["pbx"].state is ComponentState.STARTING
    assert hub.sources["pbx"].last_update is None  # runs here, sent nothing yet
    assert hub.sources["remote"].state is None
    assert set(hub.sources) == {"pbx", "remote"}  # publisher and sinks are no sources
    assert hub.feed == FeedStatus(state=ComponentState.STARTING)

    pbx.set(ComponentState.FAILED, "login refused: HTTP 401")
    feed.set(ComponentState.RUNNING)
    assert hub.sync(health.components) == 2
    assert (hub.sources["pbx"].state, hub.sources["pbx"].detail) == (
        ComponentState.FAILED,
        "login refused: HTTP 401",
    )
    assert hub.feed == FeedStatus(state=ComponentState.RUNNING)
    assert hub.sync(health.components) == 0
    assert hub.sync() == 0  # without components: the states stay as they were
    assert hub.sources["pbx"].state is ComponentState.FAILED

    snap = hub.snapshot(Filter.parse([("source", "pbx")]))
    assert [s.source for s in snap["sources"]] == ["pbx"]  # a source filter applies to them too
    assert snap["feed"] == FeedStatus(state=ComponentState.RUNNING)  # the feed is everyone's


@pytest.mark.anyio
async def test_source_changes_reach_subscribers_of_that_source_and_the_snapshot_encodes_them() -> None:
    health = Health()
    health.add("pbx", "source")
    health.add("xima", "source")
    health.add("wallboard", "feed")
    hub = StateHub()
    with hub.subscribe(Filter.parse([("source", "xima")])) as sub:
        hub.sync(health.components)
        got = []
        while True:
            try:
                got.append(orjson.loads(sub.receive.receive_nowait()[1]))
            except anyio.WouldBlock:
                break
    assert [(d["kind"], d["key"]) for d in got] == [("feed", "feed"), ("source", "xima")]
    encoded = orjson.loads(await encode_snapshot(hub.freeze(Filter.parse([("source", "pbx")]))))
    assert [s["source"] for s in encoded["sources"]] == ["pbx"]
    assert encoded["feed"] == {"state": "starting", "detail": ""}
    assert (encoded["agents"], encoded["metrics"]) == ([], [])


def test_sources_are_bounded_and_the_rest_counted() -> None:
    hub = StateHub()
    now = utcnow()
    before = ERRORS.labels("wallboard", "sources", "too_many_sources")._value.get()
    for i in range(MAX_SOURCES + 2):
        hub.touch(f"s{i}", now)
    hub.touch("s0", now)  # a known one is still followed
    hub.sync()
    assert len(hub.sources) == MAX_SOURCES
    assert ERRORS.labels("wallboard", "sources", "too_many_sources")._value.get() - before == 2


@pytest.mark.anyio
async def test_clients_reconnecting_together_share_one_encoding(monkeypatch: pytest.MonkeyPatch) -> None:
    from streamd.wallboard import snapshot as snapshot_module

    real, encodings = snapshot_module._encode_list, []

    async def counting(values: list[object], flt: Filter) -> bytes:
        encodings.append(len(values))
        return await real(values, flt)

    monkeypatch.setattr(snapshot_module, "_encode_list", counting)
    hub = StateHub()
    for i in range(3 * snapshot_module.SLICE):
        hub.update_agent(agent(i), observed=T0)
    frozen = [hub.freeze() for _ in range(20)]  # 20 clients, before any encoding has finished
    bodies: list[bytes] = []

    async def client(f: snapshot_module.Frozen) -> None:
        bodies.append(await encode_snapshot(f))

    async with anyio.create_task_group() as tg:
        for f in frozen:
            tg.start_soon(client, f)
    assert encodings == [3 * snapshot_module.SLICE, 0]  # agents and metrics once, for all 20
    assert len({orjson.loads(b)["id"] for b in bodies}) == 1
    assert len(orjson.loads(bodies[0])["agents"]) == 3 * snapshot_module.SLICE


@pytest.mark.anyio
async def test_the_cancelled_encoder_leaves_the_work_to_the_next_client() -> None:
    from streamd.wallboard import hub as hub_module

    hub = StateHub()
    for i in range(3 * hub_module.SLICE):
        hub.update_agent(agent(i), observed=T0)
    frozen = hub.freeze()
    with anyio.move_on_after(0):  # cancelled at its first yield, mid-encoding
        await encode_snapshot(frozen)
    assert frozen.encoded is None
    assert len(orjson.loads(await encode_snapshot(hub.freeze()))["agents"]) == 3 * hub_module.SLICE


@pytest.mark.anyio
async def test_a_live_client_gets_the_last_encoding_and_the_changes_since_as_deltas() -> None:
    hub = StateHub(replay=64, snapshot_reuse=8)
    for i in range(10):
        hub.update_agent(agent(i), observed=T0)
    first = hub.freeze(behind=hub.snapshot_reuse)
    await encode_snapshot(first)
    hub.update_agent(agent(3, State.BUSY), observed=T0)
    hub.update_agent(agent(11), observed=T0)
    reused = hub.freeze(behind=hub.snapshot_reuse)
    assert reused.id == first.id != hub.event_id
    assert reused.encoded is not None
    board = {
        f"{a['source']}:{a['agent_id']}": a for a in orjson.loads(await encode_snapshot(reused))["agents"]
    }
    changes = hub.since(reused.id)
    assert changes is not None
    assert [c.seq for c in changes] == [hub.seq - 1, hub.seq]
    for change in changes:  # what the page does with the deltas that follow the snapshot
        delta = orjson.loads(change.payload())
        board[delta["key"]] = delta["value"]
    assert board == {k: orjson.loads(dumps_value(v)) for k, v in hub.agents.items()}
    assert hub.freeze().id == hub.event_id  # GET /api/v1/state: always the current state
    for i in range(9):  # more changes than snapshot_reuse: encoded again
        hub.update_agent(agent(i, State.NOT_READY), observed=T0)
    assert hub.freeze(behind=hub.snapshot_reuse).id == hub.event_id


def dumps_value(value: object) -> bytes:
    from streamd.publish.encoding import dumps

    return dumps(value)
