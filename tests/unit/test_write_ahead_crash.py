"""A crash right after the ack loop spooled a push batch: its write-ahead row went in the same
transaction (spool rule 5), so the next start recovers nothing twice, and nothing older behind it;
a batch spooled while it was being written is still forgotten by the commit that wrote it; a
spool that refuses a batch deletes nothing."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path

import anyio
import orjson
import pytest

from streamd.errors import PublishError
from streamd.events import Event
from streamd.publish.encoding import Record, encode
from streamd.publish.pipeline import Pipeline
from streamd.publish.spool import Spool
from streamd.publish.units import Batch, Unit
from streamd.publish.write_ahead import WriteAhead
from tests.unit.test_pipeline_deadlines import StuckKafka

pytestmark = pytest.mark.anyio


def _events(n: int, start: int = 0) -> list[Event]:
    return [
        Event(topic="t", type="x.t.E", source="s", key=f"s:{i % 2}", data={"i": i})
        for i in range(start, start + n)
    ]


def _numbers(records: list[Record]) -> list[int]:
    return [orjson.loads(r.value)["i"] for r in records]


def _spooled(spool: Spool) -> list[int]:
    return _numbers([r for _, r in spool.peek(10_000)])


def _rows(path: Path) -> list[tuple[int, int]]:
    """The write-ahead rows left in the database: (seq, records)."""
    with sqlite3.connect(path) as db:
        return [
            (int(seq), int(n)) for seq, n in db.execute("SELECT seq, records FROM written_ahead ORDER BY seq")
        ]


def _pipeline(spool: Spool) -> tuple[Pipeline, WriteAhead]:
    pipeline = Pipeline(StuckKafka(), spool, "p.", write_ahead=0.01)
    assert pipeline.ahead is not None
    return pipeline, pipeline.ahead


def _close(pipeline: Pipeline) -> None:
    for stream in (pipeline._send, pipeline._receive, pipeline._inflight_send, pipeline._inflight_receive):
        stream.close()  # never run: its streams closed here


def _push(n: int, start: int) -> Batch:
    batch = Batch("s", _events(n, start), 0.0, held=anyio.Event())
    batch.records = [encode(e, "p.") for e in batch.events]
    return batch


async def _written(ahead: WriteAhead, *batches: Batch) -> None:
    """Hold ``batches`` (as ``emit.push`` does) and commit them: each gets its row."""
    async with anyio.create_task_group() as tg:
        for batch in batches:
            tg.start_soon(ahead.hold, batch)
        await anyio.wait_all_tasks_blocked()
        await ahead.commit()


async def test_a_spooled_batch_and_its_row_are_one_transaction_so_a_crash_recovers_nothing_twice(
    tmp_path: Path,
) -> None:
    path = tmp_path / "s.db"
    spool = Spool(path)
    pipeline, ahead = _pipeline(spool)
    first, second = _push(2, 0), _push(3, 2)
    await _written(ahead, first, second)
    assert (first.written, second.written) == (1, 2)
    await pipeline._spool_unit(Unit([first]))  # Kafka is down: the ack loop spools it
    assert first.settled
    assert first.held is not None
    assert first.held.is_set()
    assert _rows(path) == [(2, 3)]  # gone with the append, no commit needed
    _close(pipeline)
    spool.close()  # SIGKILL: no commit ran after the append

    again = Spool(path)
    assert again.recovered == 3  # only the batch that was never spooled
    assert _spooled(again) == [0, 1, 2, 3, 4]  # each record once, in order
    assert _rows(path) == []
    again.close()


async def test_a_crash_after_spooling_never_recovers_an_older_acknowledged_batch_behind_it(
    tmp_path: Path,
) -> None:
    """The acknowledged batch's row waits for the next commit; spooling the newer batch takes it
    along, or the crash would put the older values of its keys behind the newer ones."""
    path = tmp_path / "s.db"
    spool = Spool(path)
    pipeline, ahead = _pipeline(spool)
    older, newer = _push(2, 0), _push(2, 2)  # the same two keys
    await _written(ahead, older, newer)
    pipeline._acked(older)  # in Kafka; its row is queued for the next commit
    assert _rows(path) == [(1, 2), (2, 2)]
    await pipeline._spool_unit(Unit([newer]))
    assert _rows(path) == []
    assert ahead.forgetting(_push(1, 9)) == []  # nothing left for the next commit to delete
    _close(pipeline)
    spool.close()  # SIGKILL

    again = Spool(path)
    assert again.recovered == 0
    assert _spooled(again) == [2, 3]
    again.close()


async def test_a_batch_spooled_while_it_is_being_written_is_forgotten_by_the_commit_that_wrote_it(
    tmp_path: Path,
) -> None:
    path = tmp_path / "s.db"
    spool = Spool(path)
    pipeline, ahead = _pipeline(spool)
    batch = _push(2, 0)
    gate = threading.Event()
    async with anyio.create_task_group() as tg:
        try:
            tg.start_soon(spool.run, gate.wait)  # the spool's thread is busy: both calls below wait
            await anyio.wait_all_tasks_blocked()
            tg.start_soon(ahead.hold, batch)
            await anyio.wait_all_tasks_blocked()
            tg.start_soon(ahead.commit)  # writes the batch's row ...
            await anyio.wait_all_tasks_blocked()
            tg.start_soon(pipeline._spool_unit, Unit([batch]))  # ... and the ack loop spools it meanwhile
            await anyio.wait_all_tasks_blocked()
            assert batch.written is None  # neither has run: the append cannot know the row
        finally:
            gate.set()
    assert batch.written == 1
    assert batch.settled
    assert _rows(path) == [(1, 2)]  # the append did not know it: the commit queued it
    await ahead.commit()
    assert _rows(path) == []
    _close(pipeline)
    spool.close()

    again = Spool(path)
    assert again.recovered == 0
    assert _spooled(again) == [0, 1]
    again.close()


async def test_a_spool_that_refuses_a_batch_deletes_no_row(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    spool = Spool(path, max_bytes=1)  # full: refuses every record
    pipeline, ahead = _pipeline(spool)
    older, refused = _push(2, 0), _push(3, 2)
    await _written(ahead, older, refused)
    pipeline._acked(older)
    await pipeline._spool_unit(Unit([refused]))
    assert isinstance(refused.error, PublishError)
    assert not refused.settled
    assert _rows(path) == [(1, 2), (2, 3)]  # both rows kept ...
    assert ahead.forgetting(_push(1, 9)) == [(1, 1)]  # ... the acknowledged one still queued
    _close(pipeline)
    spool.close()  # SIGKILL

    again = Spool(path)
    assert again.recovered == 5  # what the crash left, the refused batch included: never a loss
    assert _spooled(again) == [0, 1, 2, 3, 4]
    again.close()


async def test_the_next_commit_deletes_the_row_an_earlier_refusal_kept(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    spool = Spool(path, max_bytes=1)
    pipeline, ahead = _pipeline(spool)
    older, refused = _push(2, 0), _push(3, 2)
    await _written(ahead, older, refused)
    pipeline._acked(older)
    await pipeline._spool_unit(Unit([refused]))
    await ahead.commit()
    assert _rows(path) == [(2, 3)]  # the refused batch's row stays until a restart recovers it
    _close(pipeline)
    spool.close()


async def test_a_refused_record_is_dead_lettered_before_its_batch_and_row_are_spooled(tmp_path: Path) -> None:
    """Kafka refuses one record for good and the rest of the unit fails: the dead letter is
    spooled first, so the refused record is always held somewhere (its batch's write-ahead row,
    gone once the batch is spooled, or its dead letter)."""
    from aiokafka.errors import KafkaConnectionError, MessageSizeTooLargeError

    path = tmp_path / "s.db"
    spool = Spool(path)
    pipeline, ahead = _pipeline(spool)
    batch = _push(3, 0)
    await _written(ahead, batch)
    loop = asyncio.get_running_loop()
    refused, failed = loop.create_future(), loop.create_future()
    refused.set_exception(MessageSizeTooLargeError("too large"))
    failed.set_exception(KafkaConnectionError("down"))
    unit = Unit(
        [batch],
        deliveries=[(refused, batch.records[1:2]), (failed, [*batch.records[:1], *batch.records[2:]])],
    )
    pipeline._open.append(unit)
    await pipeline._finish(unit)
    spooled = [r for _, r in spool.peek(10)]
    assert [r.topic for r in spooled] == ["p.deadletter", "p.t", "p.t"]
    assert _numbers(spooled[1:]) == [0, 2]
    assert _rows(path) == []
    _close(pipeline)
    spool.close()
