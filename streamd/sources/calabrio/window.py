"""Pure sliding-window arithmetic for the real-time activity poller (spec §3).

The activity API answers ``[fromTime, toTime)``: ``fromTime`` inclusive, ``toTime`` exclusive
(002 L4579-4588), and it also returns a state that began before ``fromTime`` when the agent
left it inside the window (002 L4590-4603). Rows can also arrive late from the capture pipeline.

Rules:

1. The cursor holds ``end`` (epoch ms: the exclusive end of the last window whose events were
   acknowledged) and ``seen``: the keys ``(agentId, timestamp, agentState, reasonCode)`` of the
   activities published with ``timestamp >= end - overlap``.
2. The next window is ``[end - overlap, min(now, end - overlap + max_span))``. The overlap
   re-reads rows that arrived late; ``seen`` removes the ones already published, so an activity
   exactly on a boundary is published once and none inside the overlap is missed.
3. A returned activity is new when its key is not in ``seen`` and its timestamp is
   ``>= from`` (older ones are states that began before the window and were published with an
   earlier window) — except in the very first window (``initial``), where they are the agents'
   current states and are published.
4. The cursor moves only with :func:`advance`, which the poller calls after ``emit`` returned;
   :func:`dump`/:func:`load` make it a string for the cursor store, so a restart resumes without
   gap or repeat. ``seen`` is pruned to the next overlap, so it stays small.
5. The cursor also holds ``latest``: per agent, the timestamp of the newest activity published
   as the agent's canonical state. An activity that arrives late (captured after a newer one
   was published) is still new for the vendor topic, but it is not the agent's current state:
   :func:`canonical` tells which new activities become canonical states (only those newer than
   ``latest``), so the compacted agent-state topic never goes back in time. ``latest`` is saved
   with the window (one entry per agent in view) and survives restarts.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

import orjson

ActivityKey = tuple[str, int, str, str | None]
"""``(agentId, timestamp ms, agentState, reasonCode)`` of one real-time activity."""

_VERSION = 2
_READABLE = (1, 2)
"""Cursor versions :func:`load` reads (1: before ``latest``; it loads with none)."""


@dataclass(frozen=True, slots=True)
class WindowCursor:
    """Where the activity poller is: see the module rules."""

    end: int
    seen: frozenset[ActivityKey] = field(default_factory=frozenset)
    initial: bool = False
    latest: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    """agentId -> timestamp (ms) of the newest activity published as its canonical state (rule 5)."""


@dataclass(frozen=True, slots=True)
class Window:
    """One request's ``[from_ms, to_ms)``."""

    from_ms: int
    to_ms: int

    @property
    def empty(self) -> bool:
        """True when there is nothing to ask for yet (clock did not move past ``from``)."""
        return self.to_ms <= self.from_ms


def start(now_ms: int, lookback_ms: int) -> WindowCursor:
    """The cursor of a source that has never run: the first window reaches ``lookback_ms`` back."""
    return WindowCursor(end=now_ms - lookback_ms, initial=True)


def plan(cursor: WindowCursor, now_ms: int, overlap_ms: int, max_span_ms: int) -> Window:
    """The next window to request (rule 2); ``to_ms`` never passes ``now_ms``.

    Args:
        cursor: the acknowledged position.
        now_ms: the current time, epoch ms.
        overlap_ms: how far before ``cursor.end`` to re-read.
        max_span_ms: the longest window per request (the API allows 31 days).
    """
    from_ms = cursor.end - (0 if cursor.initial else overlap_ms)
    return Window(from_ms, max(from_ms, min(now_ms, from_ms + max_span_ms)))


def is_new(cursor: WindowCursor, window: Window, key: ActivityKey) -> bool:
    """Whether an activity returned for ``window`` must be published (rule 3)."""
    if key in cursor.seen:
        return False
    return cursor.initial or key[1] >= window.from_ms


def select(cursor: WindowCursor, window: Window, keys: Iterable[ActivityKey]) -> list[ActivityKey]:
    """The keys to publish from one response, once each, in the response's order."""
    out: list[ActivityKey] = []
    chosen: set[ActivityKey] = set()
    for key in keys:
        if key not in chosen and is_new(cursor, window, key):
            chosen.add(key)
            out.append(key)
    return out


def canonical(cursor: WindowCursor, keys: Iterable[ActivityKey]) -> list[bool]:
    """For each new key (in the order given), whether it becomes its agent's canonical state:
    its timestamp is after the newest one published for the agent, counting the keys before it
    (rule 5). Pass the keys oldest first, as they are published."""
    newest = dict(cursor.latest)
    out: list[bool] = []
    for agent, ts, _, _ in keys:
        newer = agent not in newest or ts > newest[agent]
        if newer:
            newest[agent] = ts
        out.append(newer)
    return out


def advance(
    cursor: WindowCursor, window: Window, published: Iterable[ActivityKey], overlap_ms: int
) -> WindowCursor:
    """The cursor after the events of ``window`` were acknowledged (rules 4 and 5).

    Args:
        cursor: the cursor the window was planned from.
        window: the window that was requested.
        published: the keys published for it (what :func:`select` returned).
        overlap_ms: the overlap the next window will re-read; older keys are pruned.
    """
    published = list(published)
    end = max(cursor.end, window.to_ms)
    horizon = end - overlap_ms
    seen = frozenset(k for k in (*cursor.seen, *published) if k[1] >= horizon)
    latest = dict(cursor.latest)
    for agent, ts, _, _ in published:
        latest[agent] = max(ts, latest.get(agent, ts))
    return WindowCursor(end=end, seen=seen, initial=False, latest=MappingProxyType(latest))


def dump(cursor: WindowCursor) -> str:
    """Serialise for the cursor store (sorted, so equal cursors give equal strings)."""
    seen = sorted(cursor.seen, key=lambda k: (k[1], k[0], k[2], k[3] or ""))
    latest = dict(sorted(cursor.latest.items()))
    data = {"v": _VERSION, "end": cursor.end, "initial": cursor.initial, "seen": seen, "latest": latest}
    return orjson.dumps(data).decode()


def load(text: str | None) -> WindowCursor | None:
    """Parse :func:`dump`'s output; None when absent or unreadable (then the source starts afresh).

    A version-1 cursor (written before ``latest`` existed) loads with ``latest`` empty. An
    unreadable cursor is a bug or a downgrade; starting afresh re-reads ``initial_lookback``.
    """
    if not text:
        return None
    try:
        data = orjson.loads(text)
        if data.get("v") not in _READABLE:
            return None
        seen = frozenset(
            (str(a), int(t), str(s), None if r is None else str(r)) for a, t, s, r in data.get("seen", [])
        )
        latest = {str(a): int(t) for a, t in (data.get("latest") or {}).items()}
        return WindowCursor(
            end=int(data["end"]),
            seen=seen,
            initial=bool(data.get("initial", False)),
            latest=MappingProxyType(latest),
        )
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError):
        return None
