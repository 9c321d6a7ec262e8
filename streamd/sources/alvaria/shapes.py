"""The row shape of each Alvaria query: its key fields and what the diff must know about them.

Rules:

1. Rows are identified by the spec's row keys (:data:`SHAPES`, spec section 7; the org id is
   constant per source and left out): the key fields are the routing fields.
2. A key field that is absent, null or ``""`` falls back to the polled scope (teamId, workTypeId,
   contactList) or ``""``, except the row's identity field (``userId``), whose absence makes the
   row unroutable. A key field present with a value that is not a string or a number (an object,
   a list, a boolean) makes the row unroutable too; a number is used as its text.
3. Fields that tick with time (``stateDur``, ``signOnDur``, channelActivity ``*Dur``) are named
   in ``ticking``; all of them are documented integers.
4. An answer's rows (:func:`extract_rows`) are its ``rows`` (presence: ``users``; listActivity's
   single object is one row); no such field is an empty snapshot, anything else an error.
5. Answers are decoded with :func:`streamd.jsonwire.loads` (integers beyond 64 bits kept exact).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from streamd.errors import NormalizationError

Key = tuple[str, ...]
Row = dict[str, Any]


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


def extract_rows(query: str, body: Any) -> list[Any]:
    """The rows of a decoded answer (listActivity's single object is one row).

    Raises:
        NormalizationError: the answer does not have the documented shape.
    """
    if not isinstance(body, dict):
        raise NormalizationError(f"{query}: the answer is not a JSON object", "invalid_body")
    if query == "listActivity":
        return [body]
    field = "users" if query == "presence" else "rows"
    rows = body.get(field)
    if rows is None:
        return []  # every wrapper field is optional in the seed; no rows = an empty snapshot
    if not isinstance(rows, list):
        raise NormalizationError(f"{query}: {field} is not a list", "invalid_body")
    return rows
