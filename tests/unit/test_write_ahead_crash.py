"""A crash right after the ack loop spooled a batch: its write-ahead row, and every row queued for
deletion, went in the same transaction (spool rule 5), so the next start recovers nothing twice,
and nothing older behind it, also when the rows were being written then (numbered before they
are written) or the batch was being spooled when a commit ran (not written by it); a spool that
refuses a batch deletes nothing."""

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


def _restart(path: Path, max_bytes: int = 1 << 30) -> tuple[int, list[int]]:
    """Open the database again (after a crash): how many records were recovered, and the numbers
    of the spooled records, in order."""
    again = Spool(path, max_bytes=max_bytes)
    try:
        return again.recovered, _spooled(again)
    finally:
        again.close()


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

    assert _restart(path) == (3, [0, 1, 2, 3, 4])  # only the batch that was never spooled
    assert _rows(path) == []


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

    assert _restart(path) == (0, [2, 3])


async def test_a_batch_spooled_while_its_row_is_being_written_takes_the_row_along(tmp_path: Path) -> None:
    """The commit numbers the row before the spool's thread writes it; the append, handed to the
    thread after the commit, names it and deletes it once written."""
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
            assert batch.written == 1  # numbered before it is written
            tg.start_soon(pipeline._spool_unit, Unit([batch]))  # ... and the ack loop spools it meanwhile
            await anyio.wait_all_tasks_blocked()
        finally:
            gate.set()
    assert batch.settled
    assert _rows(path) == []  # written, then deleted by the append: no commit needed
    assert ahead.forgetting() == []
    _close(pipeline)
    spool.close()  # SIGKILL

    assert _restart(path) == (0, [0, 1])


async def test_a_batch_acknowledged_while_its_row_is_being_written_goes_with_a_newer_spooled_batch(
    tmp_path: Path,
) -> None:
    """The older batch's row is queued while the commit writing it waits its turn; spooling a newer
    batch of the same key (a webhook's) deletes it after it is written, so a crash never recovers
    the older value behind the newer one."""
    path = tmp_path / "s.db"
    spool = Spool(path)
    pipeline, ahead = _pipeline(spool)
    older = _push(1, 0)
    newer = Batch("s", _events(1, 2), 0.0, anyio.Event())  # key s:0 again, a durable emit
    newer.records = [encode(e, "p.") for e in newer.events]
    gate = threading.Event()
    async with anyio.create_task_group() as tg:
        try:
            tg.start_soon(spool.run, gate.wait)
            await anyio.wait_all_tasks_blocked()
            tg.start_soon(ahead.hold, older)
            await anyio.wait_all_tasks_blocked()
            tg.start_soon(ahead.commit)  # writes the older batch's row (waits its turn)
            await anyio.wait_all_tasks_blocked()
            pipeline._acked(older)  # Kafka acknowledged it meanwhile: its row is queued
            tg.start_soon(pipeline._spool_unit, Unit([newer]))  # then Kafka failed the newer one
            await anyio.wait_all_tasks_blocked()
        finally:
            gate.set()
    assert _rows(path) == []
    _close(pipeline)
    spool.close()  # SIGKILL before the next commit

    assert _restart(path) == (0, [2])


async def test_spooling_a_durable_batch_takes_the_rows_queued_for_deletion_along(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    spool = Spool(path)
    pipeline, ahead = _pipeline(spool)
    older = _push(2, 0)
    newer = Batch("s", _events(2, 2), 0.0, anyio.Event())  # the same two keys, a webhook's
    newer.records = [encode(e, "p.") for e in newer.events]
    await _written(ahead, older)
    pipeline._acked(older)  # in Kafka; its row is queued for the next commit
    await pipeline._spool_unit(Unit([newer]))
    assert newer.settled
    assert _rows(path) == []
    assert ahead.forgetting() == []
    _close(pipeline)
    spool.close()  # SIGKILL

    assert _restart(path) == (0, [2, 3])


async def test_dead_letters_take_the_rows_queued_for_deletion_along(tmp_path: Path) -> None:
    from aiokafka.errors import MessageSizeTooLargeError

    path = tmp_path / "s.db"
    spool = Spool(path)
    pipeline, ahead = _pipeline(spool)
    older = _push(2, 0)
    await _written(ahead, older)
    pipeline._acked(older)
    refused = _push(1, 2).records[0]
    await pipeline._reject([(refused, MessageSizeTooLargeError("too large"))])
    assert [r.topic for _, r in spool.peek(10)] == ["p.deadletter"]
    assert _rows(path) == []
    assert ahead.forgetting() == []
    _close(pipeline)
    spool.close()


async def test_a_batch_being_spooled_when_a_commit_runs_is_not_written_by_it(tmp_path: Path) -> None:
    """The append went to the spool's thread before the commit took the batch: a row written by the
    commit would come after the append and stay behind it."""
    path = tmp_path / "s.db"
    spool = Spool(path)
    pipeline, ahead = _pipeline(spool)
    batch, other = _push(2, 0), _push(1, 2)
    gate = threading.Event()
    async with anyio.create_task_group() as tg:
        try:
            tg.start_soon(spool.run, gate.wait)
            await anyio.wait_all_tasks_blocked()
            tg.start_soon(ahead.hold, batch)
            await anyio.wait_all_tasks_blocked()
            tg.start_soon(pipeline._spool_unit, Unit([batch]))  # the ack loop spools it ...
            await anyio.wait_all_tasks_blocked()
            tg.start_soon(ahead.hold, other)
            await anyio.wait_all_tasks_blocked()
            tg.start_soon(ahead.commit)  # ... and a commit runs meanwhile: it writes the other one only
            await anyio.wait_all_tasks_blocked()
            assert batch.held is not None
            assert not batch.held.is_set()  # held until its append ends
        finally:
            gate.set()
    assert batch.settled
    assert batch.held.is_set()
    assert (batch.written, other.written) == (1, 2)  # numbered in order, only the other one written
    assert _rows(path) == [(2, 1)]
    await ahead.commit()  # deletes row 1, never written: nothing happens
    assert _rows(path) == [(2, 1)]
    _close(pipeline)
    spool.close()  # SIGKILL

    assert _restart(path) == (1, [0, 1, 2])


async def test_a_batch_the_spool_refuses_while_a_commit_runs_is_written_next_in_its_place(
    tmp_path: Path,
) -> None:
    """The commit skipped the batch being spooled but numbered it before the newer one it wrote;
    refused, it is written by the next commit under that number: recovered before the newer one."""
    path = tmp_path / "s.db"
    spool = Spool(path, max_bytes=1)  # full: refuses every record
    pipeline, ahead = _pipeline(spool)
    refused, newer = _push(2, 0), _push(2, 2)  # the same two keys
    gate = threading.Event()
    async with anyio.create_task_group() as holds:
        async with anyio.create_task_group() as tg:
            try:
                tg.start_soon(spool.run, gate.wait)
                await anyio.wait_all_tasks_blocked()
                holds.start_soon(ahead.hold, refused)
                await anyio.wait_all_tasks_blocked()
                tg.start_soon(pipeline._spool_unit, Unit([refused]))
                await anyio.wait_all_tasks_blocked()
                holds.start_soon(ahead.hold, newer)
                await anyio.wait_all_tasks_blocked()
                tg.start_soon(ahead.commit)
                await anyio.wait_all_tasks_blocked()
            finally:
                gate.set()
        assert isinstance(refused.error, PublishError)
        assert not refused.spooling
        assert refused.held is not None
        assert not refused.held.is_set()  # still held: the spool refused it, no commit wrote it yet
        assert _rows(path) == [(2, 2)]
        await ahead.commit()  # writes it, and ends its hold
    assert _rows(path) == [(1, 2), (2, 2)]
    _close(pipeline)
    spool.close()  # SIGKILL

    assert _restart(path, max_bytes=1) == (4, [0, 1, 2, 3])


async def test_a_cancelled_spooling_or_commit_leaves_the_batch_to_the_next_commit(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    spool = Spool(path)
    pipeline, ahead = _pipeline(spool)
    batch = _push(2, 0)
    async with anyio.create_task_group() as tg:
        tg.start_soon(ahead.hold, batch)
        await anyio.wait_all_tasks_blocked()
        with anyio.CancelScope() as scope:
            scope.cancel()
            await pipeline._spool_unit(Unit([batch]))  # cancelled before the spool's thread has it
        assert not batch.settled
        assert not batch.spooling
        with anyio.CancelScope() as scope:
            scope.cancel()
            await ahead.commit()  # cancelled too: nothing written, the batch keeps its number
        assert batch.written == 1
        assert _rows(path) == []
        await ahead.commit()
    assert _rows(path) == [(1, 2)]
    _close(pipeline)
    spool.close()


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

    assert _restart(path) == (
        5,
        [0, 1, 2, 3, 4],
    )  # what the crash left, the refused batch included: never a loss


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


async def test_a_failed_commit_leaves_no_acknowledged_row_behind_a_batch_spooled_meanwhile(
    tmp_path: Path,
) -> None:
    """The rows a commit deletes stay queued until it is done: an append handed over meanwhile
    deletes them too, so the commit failing (its delete rolled back) leaves nothing older behind."""
    path = tmp_path / "s.db"
    spool = Spool(path)
    pipeline, ahead = _pipeline(spool)
    older = _push(2, 0)  # keys s:0 and s:1
    await _written(ahead, older)
    pipeline._acked(older)  # in Kafka; its row queued for the next commit
    bad = _push(1, 9)
    bad.records = [Record("p.\ud800", b"k", b"{}", ())]  # a batch the commit cannot write: it fails
    newer = Batch("s", _events(2, 2), 0.0, anyio.Event())  # the same keys, a webhook's
    newer.records = [encode(e, "p.") for e in newer.events]
    gate = threading.Event()
    async with anyio.create_task_group() as tg:
        try:
            tg.start_soon(spool.run, gate.wait)  # the spool's thread is busy: calls queue in order
            await anyio.wait_all_tasks_blocked()
            tg.start_soon(ahead.hold, bad)
            await anyio.wait_all_tasks_blocked()
            tg.start_soon(ahead.commit)  # deletes the acknowledged row, then fails
            await anyio.wait_all_tasks_blocked()
            tg.start_soon(pipeline._spool_unit, Unit([newer]))  # Kafka down for the newer batch
            await anyio.wait_all_tasks_blocked()
        finally:
            gate.set()
    assert newer.settled
    assert _rows(path) == []
    _close(pipeline)
    spool.close()  # SIGKILL before the next commit

    assert _restart(path) == (0, [2, 3])  # never the older values after the newer ones
