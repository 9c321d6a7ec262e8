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
5. The *write-ahead* table ``received`` holds what push sources read and Kafka has not yet
   acknowledged (:class:`~streamd.publish.pipeline.WriteAhead` writes it with group commit and
   deletes rows once their records are acknowledged or spooled). Opening the database moves
   whatever a crash left there into the spool, in order, ahead of anything new
   (:attr:`Spool.recovered` says how many): at-least-once, never a loss.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson

from streamd.errors import FatalError, PublishError
from streamd.publish.encoding import Record

_SCHEMA = """
CREATE TABLE IF NOT EXISTS spool (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  topic TEXT NOT NULL, key BLOB NOT NULL, value BLOB NOT NULL, headers BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS received (
  seq INTEGER PRIMARY KEY,
  topic TEXT NOT NULL, key BLOB NOT NULL, value BLOB NOT NULL, headers BLOB NOT NULL
);
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
        self.max_bytes = max_bytes
        self.path = str(path)
        self.recovered = self._recover()
        self.count, self.bytes = self._totals()
        self._received_next = 1

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._db.close()

    # -- spool --------------------------------------------------------------------------------

    def append(self, records: Sequence[Record]) -> None:
        """Durably append records (fsync'd by SQLite before returning).

        Raises:
            PublishError: the spool is full, or the database failed (disk full, read-only, I/O).
        """
        if not records:
            return
        rows = [(r.topic, r.key, r.value, _headers(r)) for r in records]
        size = sum(_row_size(row) for row in rows)
        with self._lock:
            if self.bytes + size > self.max_bytes or self._on_disk() + size > self.max_bytes:
                raise PublishError(f"outage spool full ({self.bytes} of {self.max_bytes} bytes)")
            self._write(("INSERT INTO spool (topic, key, value, headers) VALUES (?, ?, ?, ?)", rows))
            self.count += len(records)
            self.bytes += size

    # -- write-ahead of push sources -----------------------------------------------------------

    def write_ahead(self, records: Sequence[Record], forget: Sequence[tuple[int, int]] = ()) -> int:
        """Durably keep ``records`` until acknowledged; delete the ``forget`` ranges in the same
        transaction (one fsync for both). Returns the sequence number of the first record (the
        rest follow it).

        Raises:
            PublishError: the database failed.
        """
        headers = [_headers(r) for r in records]
        with self._lock:
            first = self._received_next
            self._write(
                ("INSERT INTO received (seq, topic, key, value, headers) VALUES (?, ?, ?, ?, ?)",
                 [(seq, r.topic, r.key, r.value, h) for seq, r, h in zip(itertools.count(first), records, headers)]),
                ("DELETE FROM received WHERE seq BETWEEN ? AND ?", forget),
            )  # fmt: skip
            self._received_next = first + len(records)
        return first

    def _recover(self) -> int:
        """Move what a crash left in ``received`` into the spool, in order (rule 5)."""
        with self._lock:
            [(left,)] = self._read("SELECT COUNT(*) FROM received")
            if left:
                self._write(
                    (
                        "INSERT INTO spool (topic, key, value, headers) "
                        "SELECT topic, key, value, headers FROM received ORDER BY seq",
                        [()],
                    ),
                    ("DELETE FROM received", [()]),
                )  # one transaction: a crash in between repeats nothing
        return int(left)

    def peek(self, limit: int) -> list[tuple[int, Record]]:
        """The oldest ``limit`` spooled records with their sequence numbers."""
        with self._lock:
            rows = self._read(
                "SELECT seq, topic, key, value, headers FROM spool ORDER BY seq LIMIT ?", (limit,)
            )
        return [
            (
                seq,
                Record(topic, bytes(key), bytes(value), [(k, v.encode()) for k, v in orjson.loads(headers)]),
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

    def _write(self, *statements: tuple[str, Sequence[tuple[object, ...]]]) -> None:
        """One transaction of ``(sql, rows)`` statements, rolled back on failure; the caller
        holds the lock."""
        try:
            self._db.execute("BEGIN IMMEDIATE")
            for sql, rows in statements:
                if rows:
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
        if self._db.in_transaction:
            with contextlib.suppress(sqlite3.Error):  # the original error is what gets reported
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
                _HEADER_JSON[pair] = json
        parts.append(json)
    return b"[" + b",".join(parts) + b"]"


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
