"""Pure snapshot diffing: successive answers of one query scope -> row-level change events.

Rules:

1. Every Alvaria answer is a snapshot (003 L3). :func:`diff_snapshot` compares it with the last
   *acknowledged* :class:`ScopeState` and returns the changes plus the next state; it never
   mutates its inputs, so a failed publish simply re-diffs against the old state.
2. Rows are identified by the spec's row keys (:mod:`.shapes`: the key fields are the routing
   fields, with the scope as fallback). An unroutable row is a bad row (dead letter), reported
   once while it stays the same.
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
8. The vendor events of the changes are built by :func:`~.rowevents.row_events`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import orjson

from streamd.events import frozen_constructor
from streamd.sources.alvaria.shapes import Key, QueryShape, Row

Check = Callable[[Row], tuple[Row, tuple[str, ...]]]
"""A row model's tolerant check (``Reader.check``): the row to publish and its deviating paths."""
Change = Literal["added", "changed", "removed", "unchanged"]

_NO_PREVIOUS: Row = {}  # shared by every change without previous values (never mutated)


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
    key_of, clean_add, changes_add = shape.key_of, clean.add, changes.append
    for row in rows:
        key = key_of(row, scope) if isinstance(row, dict) else None
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
            if key in prev_clean:
                clean_add(key)
                if full:
                    if _integers(row, ticking):
                        changes_add(_row_change("unchanged", key, row, cmp, ()))
                    else:
                        value, deviations = read(row)
                        changes_add(_row_change("unchanged", key, value, cmp, deviations))
            elif full:
                value, deviations = read(row)
                changes_add(_row_change("unchanged", key, value, cmp, deviations))
            continue
        value, deviations = read(row)
        if not deviations:
            clean_add(key)
        if old is None:
            changes_add(_row_change("added", key, value, cmp, deviations))
            continue
        if check is not None:  # compare what was published: a new representation is no change
            prev_row = prev.rows[key]
            old_value = read(prev_row)[0]
            if old_value is not prev_row:
                old = _without(old_value, ticking)
        published = cmp if value is row else _without(value, ticking)
        change = _change(shape, key, value, cmp, published, old, deviations)
        if change.changed:
            changes_add(change)
        elif full:
            changes_add(_row_change("unchanged", key, value, cmp, deviations))
    for key, old_row in prev.rows.items():
        if key not in new_rows:
            value, deviations = read(old_row)
            changes_add(_row_change("removed", key, value, prev_cmp[key], deviations))
    state = ScopeState(
        rows=new_rows,
        cmp=new_cmp,
        rejected_unkeyed=frozenset(unkeyed),
        clean=frozenset(clean),
        last_full=now if full else prev.last_full,
    )
    return DiffResult(changes, state, bad)


_new_row_change = frozen_constructor(RowChange, positional=True)


def _row_change(change: Change, key: Key, row: Row, cmp: Row, deviations: tuple[str, ...]) -> RowChange:
    """``RowChange(change, key, row, cmp, deviations=deviations)`` for the per-row hot path: the
    same frozen object without the frozen ``__init__``'s cost (:func:`streamd.events.frozen_constructor`)."""
    return _new_row_change(change, key, row, cmp, (), _NO_PREVIOUS, False, deviations)


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
        text = orjson.dumps(row, option=orjson.OPT_SORT_KEYS)
    except TypeError:
        text = repr(row).encode()
    fingerprint = hashlib.blake2b(text, digest_size=16).digest()  # kept poll to poll: never orjson's 4 KiB
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
