"""The write-ahead of push sources: durable before it counts as received, forgotten once in Kafka
or in the spool, recovered into the spool after a crash."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import anyio
import orjson
import pytest

from streamd.events import Event
from streamd.publish.encoding import encode
from streamd.publish.pipeline import Pipeline
from streamd.publish.spool import Spool
from tests.unit.test_pipeline_deadlines import AckingKafka, StuckKafka

pytestmark = pytest.mark.anyio


def _events(n: int, start: int = 0) -> list[Event]:
    return [
        Event(topic="t", type="x.t.E", source="s", key=f"s:{i % 3}", data={"i": i})
        for i in range(start, start + n)
    ]


def _received(path: Path) -> int:
    """Records written ahead and not forgotten (rows hold whole batches)."""
    with sqlite3.connect(path) as db:
        return int(db.execute("SELECT COALESCE(SUM(records), 0) FROM written_ahead").fetchone()[0])


async def test_a_push_is_written_ahead_before_it_returns_and_moved_to_the_spool_when_kafka_is_down(
    tmp_path: Path,
) -> None:
    spool = Spool(tmp_path / "s.db")
    pipeline = Pipeline(StuckKafka(), spool, "p.", spool_after=0.5, write_ahead=0.01)
    emit = pipeline.emitter("s")
    async with anyio.create_task_group() as tg:
        tg.start_soon(pipeline.run)
        with anyio.fail_after(3):
            await emit.push(_events(5))
        assert _received(tmp_path / "s.db") == 5  # durable although Kafka has not answered
        assert spool.count == 0
        with anyio.fail_after(5):
            while spool.count < 5:  # past spool_after: in the spool, and the copy forgotten
                await anyio.sleep(0.02)
            while _received(tmp_path / "s.db"):
                await anyio.sleep(0.02)
        tg.cancel_scope.cancel()
    await emit.aclose()


async def test_what_kafka_acknowledges_before_the_commit_never_touches_the_disk(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s.db")
    kafka = AckingKafka()
    pipeline = Pipeline(kafka, spool, "p.", write_ahead=0.2)
    emit = pipeline.emitter("s")
    async with anyio.create_task_group() as tg:
        tg.start_soon(pipeline.run)
        with anyio.fail_after(3):
            await emit.push(_events(4))  # returns once acknowledged, before the 200 ms commit
        assert len(kafka.sent) == 4
        assert _received(tmp_path / "s.db") == 0
        await emit.aclose()
    assert spool.count == 0


async def test_a_crash_leaves_the_written_events_for_the_next_start_in_order(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    crashed = Spool(path)
    crashed.append([encode(e, "p.") for e in _events(2)])  # spooled during an outage
    first = crashed.write_ahead(
        [[encode(e, "p.") for e in _events(n, start)] for n, start in ((1, 2), (2, 3))]
    )
    crashed.write_ahead([[encode(e, "p.") for e in _events(2, start=5)]], forget=[(first, first)])
    crashed.close()  # SIGKILL: nothing else ran

    spool = Spool(path)
    assert spool.recovered == 4
    assert spool.count == 6
    assert _received(path) == 0
    assert [orjson.loads(r.value)["i"] for _, r in spool.peek(10)] == [0, 1, 3, 4, 5, 6]


async def test_a_failing_write_ahead_never_blocks_a_push_source(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s.db")
    kafka = StuckKafka()
    pipeline = Pipeline(kafka, spool, "p.", spool_after=30, write_ahead=0.01)
    emit = pipeline.emitter("s")
    spool._db.execute("DROP TABLE written_ahead")  # the database fails under the write-ahead
    async with anyio.create_task_group() as tg:
        tg.start_soon(pipeline.run)
        with anyio.fail_after(3):
            await emit.push(_events(2))
        tg.cancel_scope.cancel()
    await emit.aclose()
