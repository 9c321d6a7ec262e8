"""The write-ahead of push sources (:class:`WriteAhead`): durable before it counts as received."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from functools import partial

import anyio

from streamd import telemetry as t
from streamd.errors import PublishError
from streamd.events import Event
from streamd.publish.encoding import Record
from streamd.publish.spool import Spool
from streamd.publish.units import Batch

log = logging.getLogger("streamd.pipeline")


class WriteAhead:
    """What push sources read is durable before it counts as received (group commit).

    A push batch waits (in :meth:`hold`) until the next commit, at most ``interval`` later,
    unless Kafka acknowledged it or it was spooled first; then it is skipped, so at low latency
    most batches never touch the disk. A written batch is one row (its records packed,
    :meth:`Spool.write_ahead`); acknowledged batches that were written are deleted in a later
    commit, adjacent rows as one range. A spooled batch's row goes in the transaction that spools
    its records, with every row waiting for that later commit (:meth:`forgetting`; spool rule 5),
    except the row of a batch spooled while it was being written: the commit that wrote it queues
    it. A crash loses at most the last ``interval`` of push traffic; what was written ahead is
    moved into the spool when the database is opened again.
    """

    def __init__(self, spool: Spool, encode: Callable[[Event, str], Record], interval: float) -> None:
        self.spool = spool
        self.interval = interval
        self._encode = encode
        self._pending: list[Batch] = []
        self._forget: list[int] = []  # rows of settled batches, deleted by the next commit
        self._wake = anyio.Event()
        self._failing = False

    def encode(self, batch: Batch) -> list[Record]:
        """The batch's records (encoded once: the publish loop reuses them)."""
        return [self._encode(e, batch.source) for e in batch.events]

    async def hold(self, batch: Batch) -> None:
        """Queue ``batch`` for the next commit and wait until it is durable somewhere."""
        self._pending.append(batch)
        self._wake.set()
        assert batch.held is not None
        await batch.held.wait()

    def forgetting(self, batch: Batch) -> list[tuple[int, int]]:
        """The rows to delete in the transaction that spools ``batch``, as ranges
        (:meth:`Spool.append`'s ``forget``): its own (if written) and every row waiting for the
        next commit (all settled). Hand them to :meth:`settled` once that transaction is
        committed; if it fails, they stay queued."""
        return _ranges(self._forget if batch.written is None else [*self._forget, batch.written])

    def settled(self, batch: Batch, forgotten: Sequence[tuple[int, int]] = ()) -> None:
        """``batch`` is acknowledged or spooled: release its source, forget its copy. The
        ``forgotten`` ranges of rows (:meth:`forgetting`) are deleted already: not again."""
        batch.settled = True
        if batch.held is not None:
            batch.held.set()
        if forgotten:
            self._forget = [row for row in self._forget if not _within(row, forgotten)]
        if batch.written is not None and not _within(batch.written, forgotten):
            self._forget.append(batch.written)
            self._wake.set()

    async def run(self) -> None:
        """Commit every ``interval`` while there is anything to write or forget."""
        while True:
            await self._wake.wait()
            self._wake = anyio.Event()
            await anyio.sleep(self.interval)
            await self.commit()

    async def commit(self) -> None:
        """Write the pending batches that are not settled yet, and forget settled ones."""
        batches = [b for b in self._pending if not b.settled]
        self._pending = []
        rows, self._forget = self._forget, []
        forget = _ranges(rows)
        records = sum(len(b.records) for b in batches)
        if not batches and not forget:
            return
        try:
            first = await self.spool.run(
                partial(self.spool.write_ahead, encoded=True), [b.records for b in batches], forget
            )  # the pipeline's encoder made every record (tracing adds ASCII and str-encoded values)
        except PublishError as exc:  # durability lost for these batches, never the events
            if not self._failing:
                log.error(
                    "write-ahead of push sources failing, events only in memory until Kafka has them: %s", exc
                )
            self._failing = True
            t.count_error("spool", "write_ahead", "spool_failed", records)
            self._forget.extend(rows)  # still in the database: forgotten by a later commit
        else:
            if self._failing:
                log.info("write-ahead of push sources works again")
            self._failing = False
            for row, batch in enumerate(batches, first):
                batch.written = row
                if batch.settled:  # acknowledged while being written: forget it next time
                    self._forget.append(batch.written)
                    self._wake.set()
        for batch in batches:
            assert batch.held is not None
            batch.held.set()


def _ranges(rows: list[int]) -> list[tuple[int, int]]:
    """``rows`` as sorted ranges ``(first, last)`` of adjacent rows (one ``DELETE`` each)."""
    merged: list[tuple[int, int]] = []
    for row in sorted(set(rows)):
        if merged and row == merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], row)
        else:
            merged.append((row, row))
    return merged


def _within(row: int, ranges: Sequence[tuple[int, int]]) -> bool:
    """Whether ``row`` is in one of the ``ranges`` (first and last row, inclusive)."""
    return any(first <= row <= last for first, last in ranges)
