"""Snapshots of the wallboard hub, encoded in slices and shared (:mod:`streamd.wallboard.hub`
rule 7).

Rules:

1. :class:`Lists` holds the agents and metrics a filter selects at one change, as copied value
   lists (the values are immutable), and encodes them once: the first client makes the
   encoding, the others await it; a client cancelled while encoding leaves the work to the next.
   Only the bytes are kept once made.
2. Encoding filters and encodes :data:`SLICE` entries at a time, yielding to the event loop
   between slices, so a big board never blocks it. The slices are kept as they are, never
   joined into one 10 MB string (each join was a copy on the loop): a snapshot is a list of
   parts, written in slices by :mod:`streamd.wallboard.sse` and joined once for
   ``GET /api/v1/state``.
3. The sources and the feed (few) are encoded per snapshot, with ``now``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import anyio
import anyio.lowlevel

from streamd.events import AgentState, QueueMetric, utcnow
from streamd.publish.encoding import dumps
from streamd.wallboard.model import ALL, FeedStatus, Filter, SourceStatus

SLICE = 500
"""Entries filtered and encoded between two yields to the event loop (~1 ms; a few on a loaded
machine)."""


class Lists:
    """The agents and metrics ``flt`` selects at change ``seq``, encoded once (in slices) however
    many clients wait for them; a client cancelled while encoding leaves the work to the next."""

    __slots__ = ("_agents", "_busy", "_encoded", "_metrics", "flt", "seq")

    def __init__(self, seq: int, flt: Filter, agents: list[AgentState], metrics: list[QueueMetric]) -> None:
        self.seq, self.flt = seq, flt
        self._agents, self._metrics = agents, metrics
        self._encoded: tuple[bytes, ...] | None = None
        self._busy: anyio.Event | None = None

    @property
    def encoded(self) -> Sequence[bytes] | None:
        """The encoded ``"agents":[...],"metrics":[...]`` part, once made, as parts to join
        (rule 2)."""
        return self._encoded

    async def encode(self) -> Sequence[bytes]:
        """The encoded lists (parts to join): made by the first caller, awaited by the others."""
        while self._encoded is None:
            if self._busy is not None:
                await self._busy.wait()
                continue
            busy = self._busy = anyio.Event()
            try:
                agents = await _encode_list(self._agents, self.flt)
                metrics = await _encode_list(self._metrics, self.flt)
                self._encoded = (b'"agents":', *agents, b',"metrics":', *metrics)
                self._agents, self._metrics = [], []  # only the bytes are kept
            finally:
                self._busy = None
                busy.set()
        return self._encoded


@dataclass(frozen=True, slots=True)
class Frozen:
    """The hub's state at one moment (:meth:`~streamd.wallboard.hub.StateHub.freeze`)."""

    id: str
    seq: int
    flt: Filter
    sources: list[SourceStatus]
    feed: FeedStatus | None
    lists: Lists

    @property
    def encoded(self) -> Sequence[bytes] | None:
        """The encoded agents and metrics (parts), when the hub had them already."""
        return self.lists.encoded


async def snapshot_parts(frozen: Frozen) -> list[bytes]:
    """The JSON snapshot of ``frozen`` (``id``, ``seq``, ``now``, ``sources``, ``feed``, ``agents``,
    ``metrics``) in parts to join (the lists' parts are shared: never copied here), built in
    slices so the event loop keeps running (rule 2)."""
    lists = await frozen.lists.encode()
    head = dumps(
        {"id": frozen.id, "seq": frozen.seq, "now": utcnow(), "sources": frozen.sources, "feed": frozen.feed}
    )
    return [head[:-1], b",", *lists, b"}"]


async def encode_snapshot(frozen: Frozen) -> bytes:
    """The JSON snapshot of ``frozen`` (see :func:`snapshot_parts`), joined."""
    return b"".join(await snapshot_parts(frozen))


async def _encode_list(values: list[Any], flt: Filter) -> list[bytes]:
    """``values`` that ``flt`` selects as a JSON array, in parts to join (one per slice)."""
    parts = [b"["]
    for start in range(0, len(values), SLICE):
        chunk = values[start : start + SLICE]
        if flt is not ALL:
            chunk = [v for v in chunk if flt.matches(v)]
        if chunk:
            if len(parts) > 1:
                parts.append(b",")
            parts.append(dumps(chunk)[1:-1])
        if len(values) > SLICE:
            await anyio.lowlevel.checkpoint()
    parts.append(b"]")
    return parts
