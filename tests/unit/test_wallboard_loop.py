"""The wallboard keeps the event loop running (issue 19 item 3): the snapshot's order survives
the cheap copy, and a big snapshot is written in slices with the loop running between them."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from itertools import pairwise
from typing import Any

import anyio
import orjson
import pytest

from streamd.events import AgentState, QueueMetric, State
from streamd.wallboard.hub import StateHub, encode_snapshot
from streamd.wallboard.model import ALL
from streamd.wallboard.sse import SLICES_PER_TURN, WRITE_SLICE, Turns, open_stream

pytestmark = pytest.mark.anyio

T0 = datetime(2026, 1, 1, 8, 0, tzinfo=UTC)


def agent(i: int, state: State = State.AVAILABLE) -> AgentState:
    return AgentState(
        vendor="test", source="s1", agent_id=str(i), state=state, agent_name=f"Agent {i}", queue_ids=("q1",)
    )


def metric(queue: str, value: float) -> QueueMetric:
    return QueueMetric(vendor="test", source="s1", queue_id=queue, metric="waiting_calls", value=value)


async def test_a_snapshot_lists_entries_least_recently_updated_first_after_updates_removals_and_evictions() -> (
    None
):
    hub = StateHub(max_agents=50, max_metrics=10)
    for i in range(60):  # 0-9 evicted
        hub.update_agent(agent(i), observed=T0)
    for i in (15, 30, 12):  # changed: now the most recently updated
        hub.update_agent(agent(i, State.BUSY), observed=T0)
    hub.update_agent(agent(40), observed=T0)  # identical: stays where it is
    hub.remove("agent", "s1:20")
    for q in range(12):  # q0, q1 evicted
        hub.update_metric(metric(f"q{q}", q))
    hub.update_metric(metric("q5", 99))

    body = orjson.loads(await encode_snapshot(hub.freeze()))

    expected = [i for i in range(10, 60) if i not in (12, 15, 20, 30)] + [15, 30, 12]
    assert [int(a["agent_id"]) for a in body["agents"]] == expected
    assert [a.agent_id for a in hub.agents.values()] == [str(i) for i in expected]
    assert [m["queue_id"] for m in body["metrics"]] == [f"q{q}" for q in (2, 3, 4, 6, 7, 8, 9, 10, 11, 5)]


async def test_a_big_snapshot_is_written_in_slices_with_the_loop_running_between_them() -> None:
    """A client whose socket takes everything at once (``send`` never waits) still lets the loop
    run between two slices, and no slice is much bigger than ``WRITE_SLICE``."""
    hub = StateHub()
    n = 0
    while n < 4 * WRITE_SLICE // 100:  # each agent encodes to more than 100 bytes: > 4 slices
        n += 1
        hub.update_agent(agent(n), observed=T0)
    bodies: list[bytes] = []
    turns_at_send: list[int] = []
    turns = 0
    snapshot_written = anyio.Event()

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.body":
            bodies.append(message["body"])
            turns_at_send.append(turns)
            if b"event: ping" in message["body"]:
                snapshot_written.set()

    async def receive() -> dict[str, Any]:
        await anyio.sleep_forever()
        raise AssertionError("unreachable")

    async def count_turns() -> None:
        nonlocal turns
        while True:
            await anyio.sleep(0)
            turns += 1

    stream = open_stream(hub, ALL, None, heartbeat=60)
    async with anyio.create_task_group() as tg:
        tg.start_soon(count_turns)
        with anyio.fail_after(30):
            async with anyio.create_task_group() as streaming:
                streaming.start_soon(stream, {"type": "http"}, receive, send)
                await snapshot_written.wait()
                hub.close()  # the stream ends after what it has written
        tg.cancel_scope.cancel()

    text = b"".join(bodies)
    data = text.split(b"event: snapshot\ndata: ", 1)[1].split(b"\n\n", 1)[0]
    snapshot = orjson.loads(data)
    assert [a["agent_id"] for a in snapshot["agents"]] == [str(i) for i in range(1, n + 1)]
    snapshot_bodies = [i for i, b in enumerate(bodies) if len(b) > WRITE_SLICE // 2]
    assert len(snapshot_bodies) >= 4
    assert all(len(bodies[i]) < WRITE_SLICE + 1024 for i in snapshot_bodies)
    # the other task ran between every two slices of the snapshot
    between = [turns_at_send[i] for i in snapshot_bodies]
    assert all(a < b for a, b in pairwise(between))


async def test_deltas_queued_together_are_written_together_in_order() -> None:
    hub = StateHub()
    hub.update_agent(agent(0), observed=T0)
    bodies: list[bytes] = []
    wrote = anyio.Event()

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.body" and message["body"]:
            bodies.append(message["body"])
            wrote.set()

    async def receive() -> dict[str, Any]:
        await anyio.sleep_forever()
        raise AssertionError("unreachable")

    stream = open_stream(hub, ALL, None, heartbeat=60)
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(stream, {"type": "http"}, receive, send)
            await wrote.wait()  # the snapshot
            while b"event: ping" not in bodies[-1]:
                wrote = anyio.Event()
                await wrote.wait()
            written = len(bodies)
            wrote = anyio.Event()
            for i in range(1, 6):  # five changes while the stream waits
                hub.update_agent(agent(i), observed=T0)
            await wrote.wait()
            hub.close()
    assert len(bodies) == written + 1  # one write for the five
    events = [e for e in bodies[written].decode().split("\n\n") if e]
    assert [e.splitlines()[0] for e in events] == [f"id: {hub.epoch}.{seq}" for seq in range(2, 7)]
    assert all(e.splitlines()[1] == "event: delta" for e in events)


async def test_many_clients_loading_a_snapshot_write_a_few_slices_per_turn_of_the_loop() -> None:
    hub = StateHub()
    for i in range(4 * WRITE_SLICE // 100):  # each snapshot is several slices
        hub.update_agent(agent(i), observed=T0)
    clients = 4 * SLICES_PER_TURN
    turns, turn = Turns(), 0
    slices_in_turn: Counter[int] = Counter()
    done = 0
    all_done = anyio.Event()

    async def send(message: dict[str, Any]) -> None:
        nonlocal done
        body = message.get("body", b"")
        if len(body) == WRITE_SLICE:
            slices_in_turn[turn] += 1
        if b"event: ping" in body:
            done += 1
            if done == clients:
                all_done.set()

    async def receive() -> dict[str, Any]:
        await anyio.sleep_forever()
        raise AssertionError("unreachable")

    async def count_turns() -> None:
        nonlocal turn
        while True:
            await anyio.sleep(0)
            turn += 1

    with anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            tg.start_soon(count_turns)
            for _ in range(clients):
                tg.start_soon(open_stream(hub, ALL, None, 60, turns), {"type": "http"}, receive, send)
            await all_done.wait()
            hub.close()
            tg.cancel_scope.cancel()
    assert sum(slices_in_turn.values()) >= 3 * clients
    # between two turns of another task: what is left of one loop turn and the start of the next
    assert max(slices_in_turn.values()) <= 2 * SLICES_PER_TURN
