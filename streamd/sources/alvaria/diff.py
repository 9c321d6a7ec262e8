"""Pure snapshot diffing: successive answers of one query scope -> row-level change events.

Rules:

1. Every Alvaria answer is a snapshot (003 L3). :func:`diff_snapshot` compares it with the last
   *acknowledged* :class:`ScopeState` and returns the changes plus the next state; it never
   mutates its inputs, so a failed publish simply re-diffs against the old state.
2. Rows are identified by the spec's row keys (:data:`SHAPES`); a key field missing from a row
   falls back to the polled scope (teamId, workTypeId, contactList) or ``""``, except the row's
   identity field (``userId``), whose absence makes the row a bad row.
3. Fields that tick with time (``stateDur``, ``signOnDur``, channelActivity ``*Dur``) are kept in
   the published row but never make a row "changed".
4. A row counts as changed when any other field differs; ``changed`` lists those fields and
   ``previous`` their old values. Only new or changed rows are validated (``validate``); an
   invalid row is reported once per version and held out of the state.
5. An empty answer after a non-empty one is held back (``empty_polls_before_removal``
   consecutive empties are needed) because it may be a permission problem (003 L106).
6. ``full=True`` (the first poll and every ``refresh_every``) reports every present row, with
   ``change`` = added / changed / unchanged; removals are reported either way.
7. :func:`row_events` builds the ``alvaria.{query}`` events. The ce id is
   ``stable_id(source, query, key, op, observed_at)``: a row has exactly one version per poll, so
   the id names that row version as observed; a producer retry keeps it, and a later
   A -> B -> A -> B never reuses one (the counters have no vendor version stamp, and
   userActivity's ``stateStartTime`` does not move when only ``interactionCount`` changes).
   Hashing the row content as well was measured (15 ms per 10,000 rows) and adds nothing unique.
   The event time is the vendor's ``stamp_field`` (userActivity ``stateStartTime``) when present.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Literal

import orjson

from streamd.events import Event, stable_id

Key = tuple[str, ...]
Row = dict[str, Any]
Change = Literal["added", "changed", "removed", "unchanged"]

_NO_PREVIOUS: Row = {}  # shared by every change without previous values (never mutated)

OP_NAMES: dict[str, str] = {"added": "RowAdded", "changed": "RowChanged", "removed": "RowRemoved"}
SNAPSHOT_OP = "Row"


@dataclass(frozen=True, slots=True)
class QueryShape:
    """What the diff needs to know about one query's rows."""

    name: str
    key_fields: tuple[str, ...]
    identity: str | None = None
    scope_field: str | None = None
    ticking: frozenset[str] = frozenset()
    stamp_field: str | None = None
    state_fields: tuple[str, ...] = ()

    def key_of(self, row: Mapping[str, Any], scope: str | None) -> Key | None:
        """The row key, or None when the identity field is missing."""
        if self.identity is not None and row.get(self.identity) in (None, ""):
            return None
        parts = []
        for name in self.key_fields:
            value = row.get(name)
            if value is None:
                value = scope if name == self.scope_field and scope is not None else ""
            parts.append(str(value))
        return tuple(parts)


SHAPES: dict[str, QueryShape] = {
    "listActivity": QueryShape("listActivity", ("contactList",), scope_field="contactList"),
    "teamActivity": QueryShape("teamActivity", ("teamId",), scope_field="teamId"),
    "userActivity": QueryShape(
        "userActivity",
        ("teamId", "userId"),
        identity="userId",
        scope_field="teamId",
        ticking=frozenset({"stateDur", "signOnDur"}),
        stamp_field="stateStartTime",
        state_fields=("stateId", "reasonId"),
    ),
    "channelActivity": QueryShape(
        "channelActivity",
        ("workTypeId", "interactionTypeId", "channelTypeId"),
        scope_field="workTypeId",
        ticking=frozenset({"selfServiceDur", "queueDur", "activeDur", "previewDur", "maxQueueDur"}),
    ),
    "presence": QueryShape("presence", ("userId",), identity="userId"),
}
"""Row keys per query (spec §7; the org id is constant per source and left out)."""


@dataclass(frozen=True, slots=True)
class ScopeState:
    """The last acknowledged snapshot of one scope (one team, worktype, list, or org-wide)."""

    rows: Mapping[Key, Row] = field(default_factory=dict)
    cmp: Mapping[Key, Row] = field(default_factory=dict)
    rejected: Mapping[Key, Row] = field(default_factory=dict)
    rejected_unkeyed: frozenset[bytes] = frozenset()
    empty_streak: int = 0
    last_full: float | None = None


@dataclass(frozen=True, slots=True)
class RowChange:
    """One row's change between two snapshots."""

    change: Change
    key: Key
    row: Row
    cmp: Row
    changed: tuple[str, ...] = ()
    previous: Row = field(default_factory=lambda: _NO_PREVIOUS)
    gap: bool = False


@dataclass(frozen=True, slots=True)
class BadRow:
    """A row that could not be keyed or validated (goes to the dead-letter topic once)."""

    row: Any
    reason: str
    error_type: str


@dataclass(frozen=True, slots=True)
class DiffResult:
    """What :func:`diff_snapshot` found, and the state to keep once it is published."""

    changes: list[RowChange]
    state: ScopeState
    bad: list[BadRow]
    held_empty: bool = False


def needs_full(state: ScopeState, now: float, refresh_every: float) -> bool:
    """True when the next poll of this scope must publish a full snapshot."""
    return state.last_full is None or now - state.last_full >= refresh_every


def diff_snapshot(
    shape: QueryShape,
    prev: ScopeState,
    rows: Sequence[Any],
    *,
    scope: str | None,
    full: bool,
    now: float,
    empty_polls_before_removal: int = 1,
    validate: Callable[[Row], None] | None = None,
) -> DiffResult:
    """Diff one scope's new snapshot against the previous acknowledged one.

    Args:
        shape: the query's row shape (:data:`SHAPES`).
        prev: the previous acknowledged state of this scope.
        rows: the rows of the new answer (anything; non-objects become bad rows).
        scope: the polled teamId / workTypeId / contactList, or None for org-wide.
        full: report every present row (a snapshot), not only changes.
        now: the clock reading recorded as ``last_full`` when ``full``.
        empty_polls_before_removal: consecutive empty answers needed before removals.
        validate: raises ``ValueError`` (pydantic's ``ValidationError`` is one) for an invalid row.

    Returns:
        The changes (rows in answer order, then removals), the next state and the bad rows.
    """
    if not rows and prev.rows and prev.empty_streak + 1 < empty_polls_before_removal:
        return DiffResult([], replace(prev, empty_streak=prev.empty_streak + 1), [], held_empty=True)
    ticking = shape.ticking
    prev_cmp, prev_rejected = prev.cmp, prev.rejected
    new_rows: dict[Key, Row] = {}
    new_cmp: dict[Key, Row] = {}
    rejected: dict[Key, Row] = {}
    unkeyed: set[bytes] = set()
    changes: list[RowChange] = []
    bad: list[BadRow] = []
    for row in rows:
        key = shape.key_of(row, scope) if isinstance(row, dict) else None
        if key is None:
            _unkeyable(shape, row, prev.rejected_unkeyed, unkeyed, bad)
            continue
        if key in new_cmp or key in rejected:
            bad.append(BadRow(row, f"{shape.name}: duplicate row key {':'.join(key)}", "duplicate_key"))
            continue
        if ticking:
            cmp = row.copy()  # copy-and-pop is ~3x faster than a filtering comprehension
            for name in ticking:
                cmp.pop(name, None)
        else:
            cmp = row
        old = prev_cmp.get(key)
        if old is not None and old == cmp:
            new_rows[key], new_cmp[key] = row, cmp
            if full:
                changes.append(RowChange("unchanged", key, row, cmp))
            continue
        if prev_rejected.get(key) == cmp:
            rejected[key] = cmp
            continue
        if validate is not None:
            try:
                validate(row)
            except ValueError as exc:
                rejected[key] = cmp
                bad.append(BadRow(row, f"{shape.name} row {':'.join(key)}: {exc}", "invalid_row"))
                continue
        new_rows[key], new_cmp[key] = row, cmp
        changes.append(_change(shape, key, row, cmp, old))
    for key, old_row in prev.rows.items():
        if key not in new_rows and key not in rejected:
            changes.append(RowChange("removed", key, old_row, prev_cmp[key]))
    state = ScopeState(new_rows, new_cmp, rejected, frozenset(unkeyed), 0, now if full else prev.last_full)
    return DiffResult(changes, state, bad)


def _change(shape: QueryShape, key: Key, row: Row, cmp: Row, old: Row | None) -> RowChange:
    if old is None:
        return RowChange("added", key, row, cmp)
    missing = _MISSING
    changed = [k for k, v in cmp.items() if old.get(k, missing) != v]
    changed += [k for k in old if k not in cmp]
    previous = {k: old.get(k) for k in changed}
    gap = (
        shape.stamp_field is not None
        and shape.stamp_field in changed
        and not any(f in changed for f in shape.state_fields)
    )
    return RowChange("changed", key, row, cmp, tuple(changed), previous, gap)


def _unkeyable(
    shape: QueryShape, row: Any, seen: frozenset[bytes], now_seen: set[bytes], bad: list[BadRow]
) -> None:
    try:
        fingerprint = orjson.dumps(row, option=orjson.OPT_SORT_KEYS)
    except TypeError:
        fingerprint = repr(row).encode()
    now_seen.add(fingerprint)
    if fingerprint not in seen:
        what = shape.identity or "key"
        bad.append(BadRow(row, f"{shape.name}: row without {what}", "missing_key"))


class _Missing:
    __slots__ = ()


_MISSING: Any = _Missing()


def row_events(
    shape: QueryShape,
    changes: Iterable[RowChange],
    *,
    source: str,
    scope: str | None,
    observed: datetime,
    snapshot: bool,
) -> list[Event]:
    """Build the ``alvaria.{query}`` events for ``changes``.

    Args:
        shape: the query's row shape.
        changes: from :func:`diff_snapshot`.
        source: the source name (``ce_source``, key prefix).
        scope: the polled scope, copied into the value.
        observed: when the snapshot was received (UTC).
        snapshot: the changes come from a full snapshot (present rows become ``Row`` events).

    Returns:
        One event per change, in order.
    """
    topic = f"alvaria.{shape.name}"
    type_prefix = f"{topic}."
    observed_iso = observed.isoformat()
    stamp_field = shape.stamp_field
    events: list[Event] = []
    for ch in changes:
        removed = ch.change == "removed"
        op = OP_NAMES[ch.change] if removed or not snapshot else SNAPSHOT_OP
        key = ":".join(ch.key)
        stamp = ch.row.get(stamp_field) if stamp_field is not None else None
        data = {
            "query": shape.name,
            "scope": scope,
            "key": key,
            "change": ch.change,
            "changed": ch.changed,
            "previous": ch.previous,
            "gap_detected": ch.gap,
            "observed_at": observed,
            "row": ch.row,
        }
        events.append(
            Event(
                topic=topic,
                type=type_prefix + op,
                source=source,
                key=f"{source}:{key}",
                data=data,
                time=observed if removed else (parse_time(stamp) or observed),
                id=stable_id(source, shape.name, key, op, observed_iso),
                snapshot=snapshot and not removed,
            )
        )
    return events


def parse_time(value: Any) -> datetime | None:
    """Parse an Alvaria ISO-8601 date-time (``...Z`` or ``...-07:00``); None when absent or invalid."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)
