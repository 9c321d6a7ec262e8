"""The SQLite outage spool, and the cursor store that shares its database.

Rules:

1. Records that Kafka did not acknowledge are appended in arrival order and drained in that
   order; a row is deleted only after Kafka acknowledged it (at-least-once).
2. While anything is spooled, new records are spooled behind it, so per-key order is kept.
3. The spool is bounded by ``max_bytes`` *on disk*: a record counts its topic, key, value,
   headers and SQLite's per-row overhead, and the database and its WAL file are measured before
   an append (checkpointed first when they look too big); past it, :meth:`Spool.append` raises
   :class:`PublishError` (the caller answers 503 or counts the loss; never silent). Once
   drained, :meth:`Spool.compact` gives the space back (WAL checkpoint, ``VACUUM``).
4. SQLite calls are short and local; WAL mode keeps them from blocking readers.
5. The *write-ahead* table ``written_ahead`` holds what push sources read and Kafka has not yet
   acknowledged (:class:`~streamd.publish.pipeline.WriteAhead` writes it with group commit).
   Rows of acknowledged batches are deleted by a later group commit; spooling a batch, push or
   not, deletes its row, and every row still waiting to be deleted, in the transaction that
   appends its records (:meth:`Spool.append`'s ``forget``; so does spooling dead letters), so a
   crash never leaves a batch both in the spool and written ahead, nor an older batch written
   ahead behind it (recovered after it, an older value of a key would end up last). Rows are
   numbered before they are written (:meth:`Spool.write_ahead`'s ``seqs``): an append handed to
   the spool's thread after the write deletes them once written (rule 7). One exception is
   kept on purpose: a push batch the spool refuses (full) stays written ahead, so it is not lost,
   and comes back at the next start behind what the spool took after the refusal. Opening the
   database moves whatever a crash left there into the spool, in order, ahead of anything new
   (:attr:`Spool.recovered` says how many): at-least-once, never a loss.
6. A write-ahead row holds one whole batch, its records packed into one blob (:func:`pack`,
   compressed: CloudEvents headers and JSON values repeat so much that a batch shrinks ~25 times,
   and SQLite's cost is per byte; checksummed, as a zstd frame is not, and a damaged one may
   decompress into other records; a damaged blob stops the start, naming its row): writing a
   batch is one ``INSERT``, forgetting it one ``DELETE`` (of a range of batches). The
   ``received`` table of older versions (one row per record) is moved into the spool and dropped
   when the database is opened, in one transaction, behind ``written_ahead``'s batches (which can
   only be older: written before an older version was started on the file). The new
   table has a new name so that an older version started on this file still runs (it recreates
   ``received`` and leaves ``written_ahead`` to the next newer start).
7. Async code calls the database through :meth:`Spool.run`: one long-lived thread per spool,
   which runs the calls in the order they were handed to it (they are serialised by its lock
   anyway), so no call waits on the event loop for a worker thread to be started, as
   ``anyio.to_thread`` does whenever none is idle (15-27 ms measured under load).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import sqlite3
import threading
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from operator import attrgetter, itemgetter
from pathlib import Path
from typing import Any, TypeVar

import anyio
import anyio.lowlevel
import cramjam
import msgspec
import orjson

from streamd.errors import FatalError, PublishError
from streamd.publish.encoding import Record, right_sized

T = TypeVar("T")

_RECEIVED = "(seq INTEGER PRIMARY KEY, records INTEGER NOT NULL, packed BLOB NOT NULL)"
"""The write-ahead table's columns: one row per batch, its records packed (rule 6)."""

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS spool (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  topic TEXT NOT NULL, key BLOB NOT NULL, value BLOB NOT NULL, headers BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS written_ahead {_RECEIVED};
CREATE TABLE IF NOT EXISTS cursors (
  source TEXT NOT NULL, name TEXT NOT NULL, value TEXT NOT NULL, PRIMARY KEY (source, name)
);
"""


class Spool:
    """Outage spool + cursor store in one SQLite file (``:memory:`` for tests)."""

    def __init__(self, path: Path | str, max_bytes: int = 1 << 30) -> None:
        try:
            if str(path) != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise FatalError(f"cannot open the spool database {path}: {exc}") from None
        self._lock = threading.Lock()
        self._thread: ThreadPoolExecutor | None = None  # rule 7, started by the first run()
        self._closed = False
        self.max_bytes = max_bytes
        self.path = str(path)
        try:
            self.recovered = self._recover()
        except FatalError:
            self._db.close()
            raise
        self.count, self.bytes = self._totals()
        self._received_next = 1  # recovery emptied written_ahead: numbering starts again

    @property
    def next_written_ahead(self) -> int:
        """The sequence number after the last write-ahead row written (1 once opened: recovery
        empties the table); :class:`~streamd.publish.write_ahead.WriteAhead` numbers its rows from
        it."""
        return self._received_next

    def close(self) -> None:
        """Close the database (and end the spool's thread once its calls are done)."""
        self._closed = True
        if self._thread is not None:
            self._thread.shutdown(wait=False, cancel_futures=True)  # queued calls never run
        with self._lock:
            self._db.close()

    async def run(self, call: Callable[..., T], *args: Any) -> T:
        """``call(*args)`` (a method of this spool) in the spool's own thread (rule 7).

        Like ``anyio.to_thread.run_sync``: a cancelled caller still waits for the call to end (and
        gets its result); a native asyncio cancel of a call not yet started cancels it, one that
        came while it ran reaches the caller at its next ``await``.

        Raises:
            PublishError: the spool is closed (or was closed while the call waited its turn).
        """
        await anyio.lowlevel.checkpoint_if_cancelled()
        if self._closed:
            raise PublishError(f"outage spool {self.path} is closed")
        if self._thread is None:
            self._thread = ThreadPoolExecutor(1, thread_name_prefix="streamd-spool")
        future = self._thread.submit(call, *args)
        waiting = asyncio.wrap_future(future)
        cancelled = False
        with anyio.CancelScope(shield=True):
            while True:
                try:
                    result = await asyncio.shield(waiting)
                    break
                except asyncio.CancelledError:
                    if future.cancelled():  # by close(), before it ran
                        raise PublishError(f"outage spool {self.path} is closed") from None
                    if future.cancel():  # a native cancel (anyio's cannot get here) before it ran
                        raise
                    cancelled = True  # it runs: wait for its end, as for anyio's cancellation
        if cancelled:  # the call ran: its result is the caller's, the cancel comes at its next await
            task = asyncio.current_task()
            if task is not None:
                task.cancel()
        return result

    # -- spool --------------------------------------------------------------------------------

    def append(self, records: Sequence[Record], forget: Sequence[tuple[int, int]] = ()) -> None:
        """Durably append records (fsync'd by SQLite before returning); delete the ``forget``
        ranges of write-ahead rows (first and last sequence number, inclusive) in the same
        transaction (rule 5; deleting only needs no room, so it never finds the spool full).

        Raises:
            PublishError: the spool is full, or the database failed (disk full, read-only, I/O);
                nothing is appended or deleted then.
        """
        if not records and not forget:
            return
        rows = [(r.topic, r.key, r.value, _headers(r)) for r in records]
        size = sum(_row_size(row) for row in rows)
        with self._lock:
            if rows and (self.bytes + size > self.max_bytes or self._on_disk() + size > self.max_bytes):
                raise PublishError(f"outage spool full ({self.bytes} of {self.max_bytes} bytes)")
            self._write(
                ("INSERT INTO spool (topic, key, value, headers) VALUES (?, ?, ?, ?)", rows),
                ("DELETE FROM written_ahead WHERE seq BETWEEN ? AND ?", forget),
            )
            self.count += len(records)
            self.bytes += size

    # -- write-ahead of push sources -----------------------------------------------------------

    def write_ahead(
        self,
        batches: Sequence[Sequence[Record]],
        forget: Sequence[tuple[int, int]] = (),
        *,
        seqs: Sequence[int] | None = None,
        encoded: bool = False,
    ) -> int:
        """Durably keep each batch's records until acknowledged, one row per batch (rule 6); delete
        the ``forget`` ranges of rows (first and last sequence number, inclusive) in the same
        transaction (one fsync for both). ``seqs``: the rows' sequence numbers, one per batch
        (:class:`~streamd.publish.write_ahead.WriteAhead` numbers rows before they are written);
        by default they follow the last row written. Returns the sequence number of the
        first batch's row. ``encoded``: as :func:`pack`'s.

        Raises:
            PublishError: the database failed (a sequence number that is taken, too), or a record
                cannot be held by the spool (see :func:`pack`); nothing is written then.
            ValueError: ``seqs`` does not hold one number per batch.
        """
        if seqs is not None and len(seqs) != len(batches):
            raise ValueError(f"{len(batches)} batches to write ahead, {len(seqs)} sequence numbers")
        try:
            rows = [(len(batch), pack(batch, encoded=encoded)) for batch in batches]
        except ValueError as exc:
            raise PublishError(f"outage spool {self.path}: a record cannot be written ahead: {exc}") from None
        with self._lock:
            numbers = range(self._received_next, self._received_next + len(rows)) if seqs is None else seqs
            written = [(seq, n, packed) for seq, (n, packed) in zip(numbers, rows, strict=True)]
            self._write(
                ("INSERT INTO written_ahead (seq, records, packed) VALUES (?, ?, ?)", written),
                ("DELETE FROM written_ahead WHERE seq BETWEEN ? AND ?", forget),
            )
            if written:
                self._received_next = max(self._received_next, *(seq + 1 for seq, _, _ in written))
        return written[0][0] if written else self._received_next

    def _recover(self) -> int:
        """Move what a crash left in ``written_ahead`` (or an older version in ``received``) into the spool, in order (rules 5 and 6).

        Raises:
            FatalError: a written-ahead batch cannot be read back (the database was damaged).
        """
        with self._lock:
            [(left,)] = self._read("SELECT COALESCE(SUM(records), 0) FROM written_ahead")
            if self._read("SELECT 1 FROM written_ahead LIMIT 1"):
                self._write(
                    (
                        "INSERT INTO spool (topic, key, value, headers) VALUES (?, ?, ?, ?)",
                        self._written_ahead(),
                    ),
                    ("DELETE FROM written_ahead", [()]),
                )  # one transaction: a crash in between repeats nothing
            older = 0  # an older version's table: written after any written_ahead batch (rule 6)
            columns = {row[1] for row in self._read("PRAGMA table_info(received)")}
            if columns and "topic" not in columns:
                raise FatalError(
                    f"the spool database {self.path} has a write-ahead table 'received' of an unknown "
                    f"layout (columns {', '.join(sorted(columns))}); move the file aside to start without it"
                )
            if columns:
                [(older,)] = self._read("SELECT COUNT(*) FROM received")  # one row per record
                self._write(
                    (
                        "INSERT INTO spool (topic, key, value, headers) "
                        "SELECT topic, key, value, headers FROM received ORDER BY seq",
                        [()],
                    ),
                    ("DROP TABLE received", None),
                )  # one transaction: a crash in between repeats nothing
        return int(older) + int(left)

    def _written_ahead(self) -> Iterator[tuple[str, bytes, bytes, bytes]]:
        """The records in ``written_ahead`` as spool rows, in order, one batch in memory at a time.

        Raises:
            FatalError: a batch cannot be read back, or holds another number of records than its
                row says (the database was damaged).
        """
        for seq, n, packed in self._db.execute("SELECT seq, records, packed FROM written_ahead ORDER BY seq"):
            try:
                if type(packed) is not bytes:  # TEXT would not convert; an INTEGER n is n zero bytes
                    raise ValueError(f"its packed batch is {_SQL_TYPES.get(type(packed), 'no')}, not a BLOB")
                records = unpack(packed)
                if len(records) != n:
                    raise ValueError(f"{len(records)} records, the row says {n}")
            except ValueError as exc:
                raise FatalError(
                    f"the spool database {self.path} holds an unreadable write-ahead batch "
                    f"(written_ahead row {seq}): {exc}; move the file aside to start without it"
                ) from None
            for r in records:
                yield r.topic, r.key, r.value, _headers(r)

    def peek(self, limit: int) -> list[tuple[int, Record]]:
        """The oldest ``limit`` spooled records with their sequence numbers."""
        with self._lock:
            rows = self._read(
                "SELECT seq, topic, key, value, headers FROM spool ORDER BY seq LIMIT ?", (limit,)
            )
        return [
            (
                seq,
                Record(
                    topic, bytes(key), bytes(value), tuple((k, v.encode()) for k, v in orjson.loads(headers))
                ),
            )
            for seq, topic, key, value, headers in rows
        ]

    def delete_through(self, seq: int, records: Sequence[Record]) -> None:
        """Forget everything up to and including ``seq`` (after Kafka acknowledged it).

        Raises:
            PublishError: the database failed.
        """
        with self._lock:
            self._write(("DELETE FROM spool WHERE seq <= ?", [(seq,)]))
            self.count = max(0, self.count - len(records))
            self.bytes = max(
                0, self.bytes - sum(_row_size((r.topic, r.key, r.value, _headers(r))) for r in records)
            )

    def compact(self) -> None:
        """Give the disk space of a drained spool back: checkpoint the WAL, then ``VACUUM``."""
        with self._lock:
            if self.path == ":memory:":
                return
            try:
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                self._db.execute("VACUUM")
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.Error as exc:
                raise PublishError(f"outage spool {self.path}: {exc}") from exc

    def disk_bytes(self) -> int:
        """The database's size on disk (its WAL file included)."""
        with self._lock:
            return self._on_disk()

    def _on_disk(self) -> int:
        """Bytes the database and its WAL take; checkpoints first when over the bound (the WAL
        only shrinks at a checkpoint). The caller holds the lock."""
        if self.path == ":memory:":
            return 0
        size = _file_size(self.path) + _file_size(self.path + "-wal")
        if size > self.max_bytes:
            with contextlib.suppress(sqlite3.Error):
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            size = _file_size(self.path) + _file_size(self.path + "-wal")
        return size

    def recount(self) -> None:
        """Re-read the counters from the database (they are a cache of it)."""
        with self._lock:
            self.count, self.bytes = self._totals()

    def _totals(self) -> tuple[int, int]:
        [row] = self._read(
            "SELECT COUNT(*), COALESCE(SUM(LENGTH(topic) + LENGTH(key) + LENGTH(value) + LENGTH(headers)), 0) "
            "FROM spool"
        )
        return int(row[0]), int(row[1]) + int(row[0]) * _ROW_OVERHEAD

    def _write(self, *statements: tuple[str, Iterable[tuple[object, ...]] | None]) -> None:
        """One transaction of ``(sql, rows)`` statements (``rows`` None: run once without
        parameters; an iterator is consumed inside the transaction), rolled back on failure; the
        caller holds the lock."""
        try:
            self._db.execute("BEGIN IMMEDIATE")
            for sql, rows in statements:
                if rows is None:
                    self._db.execute(sql)
                elif rows:
                    self._db.executemany(sql, rows)
            self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            self._rollback()
            raise PublishError(f"outage spool {self.path}: {exc}") from exc
        except BaseException:
            self._rollback()
            raise

    def _rollback(self) -> None:
        """End a failed transaction (SQLite may have rolled it back already, e.g. disk full)."""
        with contextlib.suppress(sqlite3.Error):  # the original error is what gets reported
            if self._db.in_transaction:  # (raises once the database is closed)
                self._db.execute("ROLLBACK")

    def _read(self, sql: str, args: tuple[object, ...] = ()) -> list[Any]:
        """Run a query; database failures become :class:`PublishError`. The caller holds the lock."""
        try:
            return self._db.execute(sql, args).fetchall()
        except sqlite3.Error as exc:
            raise PublishError(f"outage spool {self.path}: {exc}") from exc

    # -- cursors (the CursorStore protocol) ----------------------------------------------------

    def load(self, source: str, name: str) -> str | None:
        """The saved cursor for ``source``/``name``."""
        with self._lock:
            rows = self._read("SELECT value FROM cursors WHERE source=? AND name=?", (source, name))
        return str(rows[0][0]) if rows else None

    def save(self, source: str, name: str, value: str) -> None:
        """Persist a cursor.

        Raises:
            PublishError: the database failed (the cursor stays where it was).
        """
        with self._lock:
            self._write(
                (
                    "INSERT INTO cursors (source, name, value) VALUES (?, ?, ?) "
                    "ON CONFLICT(source, name) DO UPDATE SET value=excluded.value",
                    [(source, name, value)],
                )
            )


_SHARED_HEADERS = frozenset({"ce_specversion", "ce_source", "ce_type", "content-type", "streamd_snapshot"})
"""Headers whose values few records differ in (their JSON is cached; ids, subjects, times are not)."""
_HEADER_JSON: dict[tuple[str, bytes], bytes] = {}


def _headers(record: Record) -> bytes:
    """The headers as a JSON array of ``[name, value]`` pairs (the same bytes as ``orjson.dumps``
    of the list; the shared pairs' JSON is cached: 2.4x faster per record)."""
    parts = []
    for pair in record.headers:
        json = _HEADER_JSON.get(pair)
        if json is None:
            json = orjson.dumps((pair[0], pair[1].decode()))
            if pair[0] in _SHARED_HEADERS and len(_HEADER_JSON) < 4096:
                _HEADER_JSON[pair] = json = right_sized(json)  # kept: encoding rule 10
        parts.append(json)
    return b"[" + b",".join(parts) + b"]"


_SQL_TYPES = {str: "TEXT", int: "an INTEGER", float: "a REAL", type(None): "NULL"}
"""What SQLite hands back for a column's storage class (a damaged ``packed`` may hold any)."""

_ROW_OVERHEAD = 48
"""SQLite's bytes per spooled row beyond its fields (record header, rowid, cell pointer, page slack)."""


def _row_size(row: tuple[str, bytes, bytes, bytes]) -> int:
    topic, key, value, headers = row
    return len(topic) + len(key) + len(value) + len(headers) + _ROW_OVERHEAD


def _file_size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


# -- the write-ahead's packed batches (rule 6) -------------------------------------------------

_PLAIN = b"swa2"
"""The magic of an uncompressed packed batch (what versions before compression wrote)."""
_MAGIC = b"swa3"
"""The magic of a compressed packed batch (what :func:`pack` writes)."""
_LEVEL = 1
"""zstd's fastest level: ~0.3 us per record, and the blob is still ~25 times smaller."""
_MAX_BODY = 1 << 30
"""The most bytes a packed batch holds uncompressed: :func:`pack` refuses more, :func:`unpack`
allocates no more on the word of a blob's length field."""
_ENCODER = msgspec.msgpack.Encoder()
_DECODER = msgspec.msgpack.Decoder(list[tuple[str, bytes, bytes, tuple[tuple[str, bytes], ...]]])
"""Shared by every thread: an Encoder's and a Decoder's methods are thread-safe (msgspec >= 0.16)."""
_HEADERS = attrgetter("headers")
_VALUE = itemgetter(1)


def pack(records: Sequence[Record], compress: bool = True, *, encoded: bool = False) -> bytes:
    """The records in one blob, read back by :func:`unpack`: ``swa3``; the zlib CRC-32 of
    everything after it (4 bytes, big-endian); the length of the uncompressed body (4 bytes,
    big-endian); a zstd frame of that body. The body is a MessagePack array of ``[topic, key,
    value, headers]`` arrays (``headers`` an array of ``[name, value]`` pairs; topics and names are
    strings, the rest binary), made by msgspec and zstd in C. ``compress`` false gives the
    uncompressed layout of older versions: ``swa2``, then the body itself (no checksum).
    ``encoded``: every record was made by :func:`streamd.publish.encoding.encode`, whose header
    values are UTF-8 by construction (encoding rule 9), so they are not checked again (0.3 us per
    record, holding the GIL).

    Raises:
        ValueError: a record the spool could not hold (it keeps headers as JSON text): a topic or
            header name that is not valid Unicode (a lone surrogate), a header value that is not
            UTF-8; or a body of more than 1 GiB.
    """
    if not encoded:
        _check_header_values(records)
    try:
        # A Record is written as the array [topic, key, value, headers] (encoding rule 7).
        body = _ENCODER.encode(records if type(records) is list else list(records))
    except UnicodeEncodeError as exc:  # only topics and names are strings
        raise ValueError(f"a topic or header name is not valid Unicode: {exc}") from None
    if not compress:
        return _PLAIN + body
    if len(body) > _MAX_BODY:
        raise ValueError(f"a batch of {len(body)} bytes packed, more than a packed batch holds ({_MAX_BODY})")
    size = len(body).to_bytes(4, "big")
    frame = cramjam.zstd.compress(body, _LEVEL)
    checksum = zlib.crc32(frame, zlib.crc32(size)).to_bytes(4, "big")
    return b"".join((_MAGIC, checksum, size, frame))


def unpack(packed: bytes) -> list[Record]:
    """The records :func:`pack` put into ``packed`` (either layout), in order. A compressed blob's
    checksum is checked first, then its length against the bound before anything is allocated;
    its frame is decompressed into exactly that many bytes.

    Raises:
        ValueError: ``packed`` is not such a blob, or is truncated, extended or inconsistent (the
            message says what is wrong: a checksum mismatch, a length out of bounds, a frame that
            is damaged or holds another length), or holds what :func:`pack` refuses; nothing is
            read past its end.
    """
    magic = packed[:4]
    if magic == _MAGIC:
        body: bytes | bytearray | memoryview = _decompress(packed)
    elif magic == _PLAIN:
        body = memoryview(packed)[4:]
    else:
        raise ValueError(f"not a packed batch (starts with {packed[:4]!r}, {len(packed)} bytes)")
    try:
        rows = _DECODER.decode(body)
    except UnicodeDecodeError as exc:
        raise ValueError(f"a damaged packed batch: a topic or header name is not UTF-8: {exc}") from None
    except ValueError as exc:  # msgspec.DecodeError and ValidationError: truncated, extended, mistyped
        raise ValueError(f"a damaged packed batch ({len(packed)} bytes): {exc}") from None
    records = list(itertools.starmap(Record, rows))
    try:
        _check_header_values(records)
    except ValueError as exc:
        raise ValueError(f"a damaged packed batch: {exc}") from None
    return records


def _decompress(packed: bytes) -> bytearray:
    """The body of a compressed packed batch (:func:`pack`'s layout), its checksum and length checked.

    Raises:
        ValueError: what is wrong with it.
    """
    damaged = f"a damaged packed batch ({len(packed)} bytes)"
    if len(packed) < 12:
        raise ValueError(f"{damaged}: truncated before its frame")
    view = memoryview(packed)
    expected, actual = int.from_bytes(view[4:8], "big"), zlib.crc32(view[8:])
    if actual != expected:
        raise ValueError(
            f"{damaged}: checksum mismatch (CRC-32 {actual:08x}, the blob says {expected:08x}):"
            " truncated, extended or damaged"
        )
    size = int.from_bytes(view[8:12], "big")
    if size > _MAX_BODY:
        raise ValueError(f"{damaged}: says it holds {size} bytes, more than a packed batch can ({_MAX_BODY})")
    body = bytearray(size)
    try:
        written = cramjam.zstd.decompress_into(view[12:], body)
    except cramjam.DecompressionError as exc:  # "failed to write whole buffer": more than `size`
        raise ValueError(
            f"{damaged}: its compressed frame is damaged or holds more than the {size} bytes it says ({exc})"
        ) from None
    if written != size:
        raise ValueError(f"{damaged}: its compressed frame holds {written} bytes, not the {size} it says")
    return body


def _check_header_values(records: Iterable[Record]) -> None:
    """Raises ``ValueError`` if a header value is not UTF-8 (all values joined, so checked in C;
    a separator ends any partial character, so each value is checked on its own)."""
    try:
        b"\n".join(map(_VALUE, itertools.chain.from_iterable(map(_HEADERS, records)))).decode()
    except UnicodeDecodeError as exc:
        raise ValueError(f"a header value is not UTF-8: {exc}") from None
