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
    commit, adjacent rows as one range. Spooling any batch (push or not) deletes its row and every
    row waiting for that later commit in the transaction that spools its records
    (:meth:`spooling`; spool rule 5); spooling dead letters deletes the waiting rows too
    (:meth:`forgetting`, :meth:`forgot`).

    Rows are numbered here, in the order the batches were held, when a commit takes them and
    before it hands them to the spool's thread (a counter from :attr:`Spool.next_written_ahead`);
    the thread runs calls in the order they were handed over (spool rule 7), so an append that
    names a row being written (the row of the batch it spools, or of a batch acknowledged
    meanwhile, queued) deletes it after it is written; a row of a failed commit was never
    written, and deleting it does nothing. A batch whose spooling is under way is not written:
    it keeps its place (and number) until the append ends; if the spool refuses it, the next
    commit writes it under that number (recovered at the next start, before the batches held
    after it, but behind what the spool took after the refusal). A crash loses at most the last
    ``interval`` of push traffic; what was written ahead is moved into the spool when the
    database is opened again.
    """

    def __init__(self, spool: Spool, encode: Callable[[Event, str], Record], interval: float) -> None:
        self.spool = spool
        self.interval = interval
        self._encode = encode
        self._pending: list[Batch] = []
        self._forget: list[int] = []  # rows of settled batches, deleted by the next commit
        self._next = spool.next_written_ahead  # the number of the next row (see above)
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

    def forgetting(self, batch: Batch | None = None) -> list[tuple[int, int]]:
        """The rows to delete in the transaction that spools ``batch`` (or dead letters), as
        ranges (:meth:`Spool.append`'s ``forget``): its own (if numbered) and every row waiting for
        the next commit (all settled). Hand them to :meth:`settled` (:meth:`forgot`) once that
        transaction is committed; if it fails, they stay queued."""
        rows = self._forget if batch is None or batch.written is None else [*self._forget, batch.written]
        return _ranges(rows)

    def spooling(self, batch: Batch) -> list[tuple[int, int]]:
        """:meth:`forgetting` for the append that spools ``batch``, which is handed to the spool's
        thread next: no commit writes the batch until :meth:`settled` or :meth:`refused` (its row
        would be written after the append, and recovered behind what is spooled after it)."""
        batch.spooling = True
        return self.forgetting(batch)

    def settled(self, batch: Batch, forgotten: Sequence[tuple[int, int]] = ()) -> None:
        """``batch`` is acknowledged or spooled: release its source, forget its copy. The
        ``forgotten`` ranges of rows (:meth:`forgetting`) are deleted already: not again."""
        batch.settled = True
        batch.spooling = False
        if batch.held is not None:
            batch.held.set()
        self.forgot(forgotten)
        if batch.written is not None and not _within(batch.written, forgotten):
            self._forget.append(batch.written)
            self._wake.set()

    def forgot(self, forgotten: Sequence[tuple[int, int]]) -> None:
        """The ``forgotten`` ranges of rows (:meth:`forgetting`) are deleted: not again."""
        if forgotten:
            self._forget = [row for row in self._forget if not _within(row, forgotten)]

    def refused(self, batch: Batch) -> None:
        """Spooling ``batch`` failed (:meth:`spooling`): the next commit writes it unless written."""
        batch.spooling = False
        if batch.held is not None and not batch.settled:
            self._wake.set()

    async def run(self) -> None:
        """Commit every ``interval`` while there is anything to write or forget."""
        while True:
            await self._wake.wait()
            self._wake = anyio.Event()
            await anyio.sleep(self.interval)
            await self.commit()

    async def commit(self) -> None:
        """Write the pending batches that are neither settled nor being spooled, and forget
        settled ones."""
        taken = [b for b in self._pending if not b.settled]
        for batch in taken:  # numbered in the order they were held, before anything is written
            if batch.written is None:
                batch.written = self._next
                self._next += 1
        batches = [b for b in taken if not b.spooling]
        seqs = [b.written for b in batches if b.written is not None]  # all of them
        self._pending = [b for b in taken if b.spooling]  # until their append ends (refused())
        # The rows to delete stay queued until this commit is done: an append handed over
        # meanwhile deletes them too (harmless twice), and a failed commit leaves none behind.
        forget = _ranges(self._forget)
        records = sum(len(b.records) for b in batches)
        if not batches and not forget:
            return
        try:
            await self.spool.run(
                partial(self.spool.write_ahead, seqs=seqs, encoded=True),
                [b.records for b in batches],
                forget,
            )  # the pipeline's encoder made every record (tracing adds ASCII and str-encoded values)
        except PublishError as exc:  # durability lost for these batches, never the events
            if not self._failing:
                log.error(
                    "write-ahead of push sources failing, events only in memory until Kafka has them: %s", exc
                )
            self._failing = True
            t.count_error("spool", "write_ahead", "spool_failed", records)
            for batch in batches:
                batch.written = None  # never written (deleting its row, if queued, does nothing)
            if self._forget:
                self._wake.set()  # still in the database: the next commit deletes them
        except BaseException:  # cancelled before the spool's thread had it: nothing was written
            self._pending[:0] = [b for b in batches if not b.settled]  # their numbers kept: in order
            raise
        else:
            self.forgot(forget)
            if self._failing:
                log.info("write-ahead of push sources works again")
            self._failing = False
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
