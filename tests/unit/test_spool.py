"""The SQLite spool: order, durability across reopen, limits, and database failures as PublishError."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import anyio
import pytest

from streamd.errors import FatalError, PublishError
from streamd.publish.encoding import Record
from streamd.publish.spool import Spool


def _records(n: int, start: int = 0, size: int = 10) -> list[Record]:
    return [
        Record("t", f"k{i}".encode(), b"v" * size, (("ce_id", f"{i}".encode()),))
        for i in range(start, start + n)
    ]


def test_order_kept_and_survives_reopen(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s.db")
    spool.append(_records(3))
    spool.append(_records(2, start=3))
    spool.close()
    again = Spool(tmp_path / "s.db")
    assert again.count == 5
    rows = again.peek(10)
    assert [r.key for _, r in rows] == [b"k0", b"k1", b"k2", b"k3", b"k4"]
    assert rows[0][1].headers == (("ce_id", b"0"),)
    again.delete_through(rows[2][0], [r for _, r in rows[:3]])
    assert [r.key for _, r in again.peek(10)] == [b"k3", b"k4"]
    assert again.count == 2
    again.close()


def test_full_spool_refuses_and_keeps_what_it_has() -> None:
    spool = Spool(":memory:", max_bytes=1_048_576)
    spool.append(_records(1, size=1_000_000))
    with pytest.raises(PublishError, match="spool full"):
        spool.append(_records(1, size=100_000))
    assert spool.count == 1


def test_database_failure_is_a_publish_error_and_rolls_back(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s.db")
    spool._db.execute("PRAGMA max_page_count=8")  # a full disk, as SQLite sees it
    with pytest.raises(PublishError, match="full"):
        spool.append(_records(200, size=4000))
    assert spool.count == 0
    spool.append(_records(1))  # no transaction left open: the next write works
    assert spool.count == 1
    spool.recount()
    assert spool.count == 1


def test_unopenable_spool_is_fatal_with_the_path(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(FatalError, match="cannot open the spool database"):
        Spool(blocker / "spool.db")


def test_cursors_round_trip() -> None:
    spool = Spool(":memory:")
    assert spool.load("src", "window") is None
    spool.save("src", "window", "a")
    spool.save("src", "window", "b")
    assert spool.load("src", "window") == "b"


def _with_big_headers(n: int) -> list[Record]:
    """Records whose CloudEvents headers outweigh their key and value, as small events' do."""
    headers = [(f"ce_{name}", b"x" * 200) for name in ("id", "source", "type", "time", "subject")]
    return [Record("streamd.o2g.telephony", f"k{i}".encode(), b"{}", headers) for i in range(n)]


def test_max_bytes_bounds_the_file_on_disk_and_draining_gives_it_back(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    spool = Spool(path, max_bytes=1_048_576)
    appended, refusal = 0, ""
    while not refusal:
        try:
            spool.append(_with_big_headers(50))
        except PublishError as exc:
            refusal = str(exc)
        else:
            appended += 50
    assert "spool full" in refusal
    on_disk = path.stat().st_size + Path(f"{path}-wal").stat().st_size
    assert appended > 500
    assert on_disk <= 1_048_576 * 1.1, on_disk  # headers, pages and the WAL counted
    assert spool.disk_bytes() == on_disk
    while rows := spool.peek(500):
        spool.delete_through(rows[-1][0], [r for _, r in rows])
    spool.compact()
    assert spool.count == 0
    assert spool.disk_bytes() < 100_000  # the space is given back once drained
    spool.append(_with_big_headers(50))  # and it takes records again
    spool.close()
    assert Spool(path).bytes == spool.bytes  # the count survives a reopen


def test_headers_are_stored_exactly_whatever_is_cached(tmp_path: Path) -> None:
    """Shared header pairs are encoded once (a cache); the stored bytes are those of encoding each
    record's pairs, and every record reads back with its own headers (quotes, non-ASCII, ids)."""
    import orjson

    from streamd.events import Event
    from streamd.publish import spool as spool_module
    from streamd.publish.encoding import encode

    events = [
        Event(topic="t", type="x.t.E", source="s", key=key, data={"i": i}, deviations=dev)
        for i, (key, dev) in enumerate([("s:1", ()), ('s:"quoted"\\', ()), ("s:ünï", ("$.a",)), ("s:1", ())])
    ]
    records = [encode(e, "p.") for e in events]
    for record in records:
        assert spool_module._headers(record) == orjson.dumps([[k, v.decode()] for k, v in record.headers])
    spool = Spool(tmp_path / "s.db")
    spool.append(records)
    spool.write_ahead([records])
    assert [r for _, r in spool.peek(10)] == records
    spool.close()
    again = Spool(tmp_path / "s.db")  # the write-ahead copy is recovered into the spool, in order
    assert [r for _, r in again.peek(10)] == records + records
    again.close()


@pytest.mark.anyio
async def test_async_calls_run_in_the_spools_one_thread_and_a_cancelled_caller_waits_for_the_call() -> None:
    spool = Spool(":memory:")
    threads = {await spool.run(threading.get_ident) for _ in range(5)}
    assert len(threads) == 1
    assert threading.get_ident() not in threads
    ended = threading.Event()

    def slow() -> None:
        time.sleep(0.2)
        ended.set()

    with anyio.move_on_after(0.01):
        await spool.run(slow)
    assert ended.is_set()  # the caller left only once the call had ended
    spool.close()


@pytest.mark.anyio
async def test_a_closed_spool_refuses_calls_with_a_publish_error() -> None:
    spool = Spool(":memory:")
    await spool.run(spool.recount)
    spool.close()
    with pytest.raises(PublishError, match="is closed"):
        await spool.run(spool.recount)


@pytest.mark.anyio
async def test_a_call_queued_when_the_spool_is_closed_never_runs_and_its_caller_gets_a_publish_error() -> (
    None
):
    spool = Spool(":memory:")
    gate, ran = threading.Event(), threading.Event()
    outcome: list[str] = []

    async def queued() -> None:
        try:
            await spool.run(ran.set)
        except PublishError as exc:
            outcome.append(str(exc))

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(spool.run, gate.wait)  # the thread is busy: the next call waits its turn
            await anyio.wait_all_tasks_blocked()
            tg.start_soon(queued)
            await anyio.wait_all_tasks_blocked()
            spool.close()
            gate.set()
    assert not ran.is_set()
    assert len(outcome) == 1
    assert "is closed" in outcome[0]


@pytest.mark.anyio
async def test_a_native_cancel_stops_a_call_not_yet_started_and_waits_for_one_that_runs() -> None:
    spool = Spool(":memory:")
    gate, started, ran = threading.Event(), threading.Event(), threading.Event()

    def busy() -> str:
        started.set()
        gate.wait()
        return "done"

    first = asyncio.ensure_future(spool.run(busy))
    second = asyncio.ensure_future(spool.run(ran.set))  # queued behind the first
    while not started.is_set():
        await asyncio.sleep(0.001)
    first.cancel()  # it runs: the caller waits for its end, then is cancelled
    second.cancel()  # not started: it never runs
    await asyncio.sleep(0.01)
    assert not first.done()
    gate.set()
    with pytest.raises(asyncio.CancelledError):
        await first
    with pytest.raises(asyncio.CancelledError):
        await second
    assert await spool.run(lambda: "next") == "next"
    assert not ran.is_set()
    spool.close()


def test_an_append_deletes_the_write_ahead_rows_it_is_given_or_nothing(tmp_path: Path) -> None:
    """In one transaction with the records (spool rule 5); a refused append deletes nothing, and
    deleting alone needs no room."""
    path = tmp_path / "s.db"
    spool = Spool(path)
    first = spool.write_ahead([_records(2), _records(1, 2), _records(1, 3)])

    def rows() -> list[int]:
        return [int(seq) for (seq,) in spool._db.execute("SELECT seq FROM written_ahead ORDER BY seq")]

    spool.append(_records(2), forget=[(first, first)])
    assert rows() == [first + 1, first + 2]
    spool.max_bytes = spool.bytes  # full
    with pytest.raises(PublishError, match="spool full"):
        spool.append(_records(1, 2), forget=[(first + 1, first + 2)])
    assert rows() == [first + 1, first + 2]
    spool.append([], forget=[(first + 1, first + 2)])
    assert rows() == []
    assert spool.count == 2
    spool.close()
    again = Spool(path)
    assert (again.recovered, again.count) == (0, 2)
    again.close()
