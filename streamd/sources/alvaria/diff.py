"""Pure snapshot diffing: successive answers of one query scope -> row-level change events.

Rules:

1. Every Alvaria answer is a snapshot (003 L3). :func:`diff_snapshot` compares it with the last
   *acknowledged* :class:`ScopeState` and returns the changes plus the next state; it never
   mutates its inputs, so a failed publish simply re-diffs against the old state.
2. Rows are identified by the spec's row keys (:data:`SHAPES`): the key fields are the routing
   fields. A key field that is absent, null or ``""`` falls back to the polled scope (teamId,
   workTypeId, contactList) or ``""``, except the row's identity field (``userId``), whose absence
   makes the row unroutable. A key field present with a value that is not a string or a number
   (an object, a list, a boolean) makes the row unroutable too; a number is used as its text. An
   unroutable row is a bad row (dead letter), reported once while it stays the same.
3. Tolerant reading (:mod:`streamd.tolerant`): every routable row is published, whatever else
   deviates from its model. ``check`` (the query's ``Reader.check``) gives the row to publish
   (unambiguous coercions applied) and its deviating paths; only rows that are published in this
   poll are checked (new, changed, snapshot and removed rows), so an unchanged row costs nothing.
   A snapshot row unchanged since a check that found it conforming is not checked again when its
   ticking fields are integers (their documented type, all of them).
4. Fields that tick with time (``stateDur``, ``signOnDur``, channelActivity ``*Dur``) are kept in
   the published row but never make a row "changed".
5. A row counts as changed when any other field's *published* value differs (a value that only
   changed its representation, ``5`` -> ``"5"``, is no change); ``changed`` lists those fields and
   ``previous`` their old published values. The state keeps the rows as received.
6. An empty answer after a non-empty one is held back (``empty_polls_before_removal``
   consecutive empties are needed) because it may be a permission problem (003 L106).
7. ``full=True`` (the first poll and every ``refresh_every``) reports every present row, with
   ``change`` = added / changed / unchanged; removals are reported either way.
8. :func:`row_events` builds the ``alvaria.{query}`` events. The ce id is
   ``stable_id(source, query, key, op, observed_at)``: a row has exactly one version per poll, so
   the id names that row version as observed; a producer retry keeps it, and a later
   A -> B -> A -> B never reuses one (the counters have no vendor version stamp, and
   userActivity's ``stateStartTime`` does not move when only ``interactionCount`` changes).
   Hashing the row content as well was measured (15 ms per 10,000 rows) and adds nothing unique.
   The event time is the vendor's ``stamp_field`` (userActivity ``stateStartTime``) when present.
   A row's deviations ride on its event as paths into the Kafka value (``$.row.stateDur``, the
   ``streamd_deviations`` header), and each such event counts once in
   ``streamd_deviations_total{source,type}``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Literal

import orjson

from streamd.events import Event, stable_id
from streamd.telemetry import count_deviation

Key = tuple[str, ...]
Row = dict[str, Any]
Check = Callable[[Row], tuple[Row, tuple[str, ...]]]
"""A row model's tolerant check (``Reader.check``): the row to publish and its deviating paths."""
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
    """Fields that tick with time; all are documented integers (rule 3 relies on it)."""
    stamp_field: str | None = None
    state_fields: tuple[str, ...] = ()

    def key_of(self, row: Mapping[str, Any], scope: str | None) -> Key | None:
        """The row key, or None when the row is unroutable (rule 2)."""
        parts = []
        for name in self.key_fields:
            value = row.get(name)
            if value is None or value == "":
                if name == self.identity:
                    return None
                parts.append(scope if name == self.scope_field and scope is not None else "")
            elif isinstance(value, str):
                parts.append(value)
            elif _is_number(value):
                parts.append(str(value))
            else:
                return None
        return tuple(parts)

    def unroutable_field(self, row: Mapping[str, Any]) -> str:
        """The first key field of ``row`` that makes it unroutable (for the dead letter's reason)."""
        for name in self.key_fields:
            value = row.get(name)
            if value is None or value == "":
                if name == self.identity:
                    return name
            elif not isinstance(value, str) and not _is_number(value):
                return name
        return self.identity or self.key_fields[0]


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


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
    """The rows as received (with their latest ticking values)."""
    cmp: Mapping[Key, Row] = field(default_factory=dict)
    """The rows as received without their ticking fields: what the next snapshot is compared with."""
    rejected_unkeyed: frozenset[bytes] = frozenset()
    clean: frozenset[Key] = frozenset()
    """Rows whose last check found no deviation and which have not changed since (ticking aside)."""
    empty_streak: int = 0
    last_full: float | None = None


@dataclass(frozen=True, slots=True)
class RowChange:
    """One row's change between two snapshots."""

    change: Change
    key: Key
    row: Row
    """The row to publish: as received, with unambiguous coercions applied (rule 3)."""
    cmp: Row
    """The row as received without its ticking fields (what the state keeps)."""
    changed: tuple[str, ...] = ()
    previous: Row = field(default_factory=lambda: _NO_PREVIOUS)
    gap: bool = False
    deviations: tuple[str, ...] = ()
    """JSON paths of ``row`` that deviate from the query's row model (``$.stateDur``)."""


@dataclass(frozen=True, slots=True)
class BadRow:
    """A row that could not be routed (goes to the dead-letter topic)."""

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
    check: Check | None = None,
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
        check: the row model's tolerant check (``Reader.check``): the row to publish and its
            deviating paths; None publishes rows exactly as received, without deviations.

    Returns:
        The changes (rows in answer order, then removals), the next state and the bad rows.
    """
    if not rows and prev.rows and prev.empty_streak + 1 < empty_polls_before_removal:
        return DiffResult([], replace(prev, empty_streak=prev.empty_streak + 1), [], held_empty=True)
    read = check or _as_received
    ticking = shape.ticking
    prev_cmp = prev.cmp
    new_rows: dict[Key, Row] = {}
    new_cmp: dict[Key, Row] = {}
    clean: set[Key] = set()
    prev_clean = prev.clean
    unkeyed: set[bytes] = set()
    changes: list[RowChange] = []
    bad: list[BadRow] = []
    deviations: tuple[str, ...]
    for row in rows:
        key = shape.key_of(row, scope) if isinstance(row, dict) else None
        if key is None:
            _unkeyable(shape, row, prev.rejected_unkeyed, unkeyed, bad)
            continue
        if key in new_cmp:
            bad.append(BadRow(row, f"{shape.name}: duplicate row key {':'.join(key)}", "duplicate_key"))
            continue
        cmp = _without(row, ticking)
        new_rows[key], new_cmp[key] = row, cmp
        old = prev_cmp.get(key)
        if old is not None and old == cmp:
            was_clean = key in prev_clean
            if was_clean:
                clean.add(key)
            if full:
                if was_clean and _integers(row, ticking):
                    value, deviations = row, ()
                else:
                    value, deviations = read(row)
                changes.append(RowChange("unchanged", key, value, cmp, deviations=deviations))
            continue
        value, deviations = read(row)
        if not deviations:
            clean.add(key)
        if old is None:
            changes.append(RowChange("added", key, value, cmp, deviations=deviations))
            continue
        if check is not None:  # compare what was published: a new representation is no change
            prev_row = prev.rows[key]
            old_value = read(prev_row)[0]
            if old_value is not prev_row:
                old = _without(old_value, ticking)
        published = cmp if value is row else _without(value, ticking)
        change = _change(shape, key, value, cmp, published, old, deviations)
        if change.changed:
            changes.append(change)
        elif full:
            changes.append(RowChange("unchanged", key, value, cmp, deviations=deviations))
    for key, old_row in prev.rows.items():
        if key not in new_rows:
            value, deviations = read(old_row)
            changes.append(RowChange("removed", key, value, prev_cmp[key], deviations=deviations))
    state = ScopeState(
        rows=new_rows,
        cmp=new_cmp,
        rejected_unkeyed=frozenset(unkeyed),
        clean=frozenset(clean),
        last_full=now if full else prev.last_full,
    )
    return DiffResult(changes, state, bad)


def _as_received(row: Row) -> tuple[Row, tuple[str, ...]]:
    return row, ()


def _integers(row: Row, ticking: frozenset[str]) -> bool:
    """Whether every ticking field of ``row`` is an integer or absent (it then conforms)."""
    for name in ticking:
        value = row.get(name)
        if value is not None and type(value) is not int:
            return False
    return True


def _without(row: Row, ticking: frozenset[str]) -> Row:
    if not ticking:
        return row
    cmp = row.copy()  # copy-and-pop is ~3x faster than a filtering comprehension
    for name in ticking:
        cmp.pop(name, None)
    return cmp


def _change(
    shape: QueryShape,
    key: Key,
    row: Row,
    cmp: Row,
    published: Row,
    old: Row,
    deviations: tuple[str, ...],
) -> RowChange:
    missing = _MISSING
    changed = [k for k, v in published.items() if old.get(k, missing) != v]
    changed += [k for k in old if k not in published]
    previous = {k: old.get(k) for k in changed}
    gap = (
        shape.stamp_field is not None
        and shape.stamp_field in changed
        and not any(f in changed for f in shape.state_fields)
    )
    return RowChange("changed", key, row, cmp, tuple(changed), previous, gap, deviations)


def _unkeyable(
    shape: QueryShape, row: Any, seen: frozenset[bytes], now_seen: set[bytes], bad: list[BadRow]
) -> None:
    try:
        fingerprint = orjson.dumps(row, option=orjson.OPT_SORT_KEYS)
    except TypeError:
        fingerprint = repr(row).encode()
    now_seen.add(fingerprint)
    if fingerprint not in seen:
        if isinstance(row, dict):
            what = f"row without a usable {shape.unroutable_field(row)} (a non-empty string or a number)"
        else:
            what = f"row is not a JSON object but {type(row).__name__}"
        bad.append(BadRow(row, f"{shape.name}: {what}", "missing_key"))


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
    """Build the ``alvaria.{query}`` events for ``changes`` (and count the deviating ones).

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
        deviations = _in_value(ch.deviations) if ch.deviations else ()
        if deviations:
            count_deviation(source, type_prefix + op)
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
                deviations=deviations,
            )
        )
    return events


def _in_value(paths: tuple[str, ...]) -> tuple[str, ...]:
    """Row paths (``$.stateDur``) as paths into the Kafka value (``$.row.stateDur``)."""
    return tuple("$.row" + p[1:] if p.startswith("$") else p for p in paths)


def parse_time(value: Any) -> datetime | None:
    """Parse an Alvaria ISO-8601 date-time (``...Z`` or ``...-07:00``); None when absent or invalid."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)
