"""Served traffic that deviates from the document the way real servers do (issue 13).

Rules:

1. A ``share`` (0..1) of the served value entries, websocket messages and report rows deviates:
   a number sent as a string, an unknown field (in the entry, key, value, row or cell), a value
   ``type`` outside the documented list, an unreadable ``lastUpdateTime``, a documented field
   missing or ``null``, the value double-encoded as a JSON string, a row without its ``values``
   object (but with a field that identifies it), a cell that is not an object.
2. The choices are seeded (apart from the world's generator: the data is the same with or
   without deviations), never touch the routing fields (``metricId``, ``categoryValue``), keep
   the value's ``lastUpdateTime`` in every form (so a new version still differs from the
   previous one) and change only what is served, never the stored values.
3. Every served entry and row is logged in :attr:`Deviator.served` with the JSON paths a
   tolerant reader must report for it (none when it conforms).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from streamd.tolerant import json_path

_INT_FIELDS = ("count", "finishedDuration", "durationSum", "numCountingUp", "numCountingDown")
_VALUE_FIELDS = (*_INT_FIELDS, "value")
"""The type-specific fields of the documented values (``type`` and ``lastUpdateTime`` aside)."""
EXTRA_FIELD = "simExtra"
"""The name of the unknown field a deviation adds."""


@dataclass(frozen=True, slots=True)
class Served:
    """One entry or report row the simulator served while ``deviate`` is on (rule 3).

    ``where`` is ``values`` (a REST result), ``ws`` (a socket message) or ``historic`` (a report
    row); ``key`` is the value key, or ``(report key, timeframe start, row index)``; ``kind`` names
    the deviation (``""`` for none) and ``paths`` the JSON paths it must be reported under.
    """

    where: str
    key: tuple[Any, ...]
    kind: str = ""
    paths: tuple[str, ...] = ()


class Deviator:
    """Makes a ``share`` of what is served deviate (module rules)."""

    def __init__(self, share: float, seed: int) -> None:
        if not 0.0 <= share <= 1.0:
            raise ValueError(f"deviate must be a share between 0 and 1, not {share!r}")
        self.share = share
        self.served: list[Served] = []
        self._rng = random.Random(f"{seed}|deviate")

    def entry(self, where: str, key: tuple[Any, ...], entry: dict[str, Any]) -> dict[str, Any]:
        """``entry`` as served: a deviating copy for a ``share`` of them (logged either way)."""
        if not self.share:
            return entry
        paths: tuple[str, ...] = ()
        kind = ""
        if self._rng.random() < self.share:
            entry = orjson.loads(orjson.dumps(entry))  # a deep copy: the stored value stays as it is
            kind, paths = self._deviate_entry(entry)
        self.served.append(Served(where, key, kind, paths))
        return entry

    def rows(self, key: str, start: str, report: dict[str, Any]) -> None:
        """Make a ``share`` of a report's rows deviate in place; log every row."""
        if not self.share:
            return
        for index, row in enumerate(report.get("rows", [])):
            paths: tuple[str, ...] = ()
            kind = ""
            if self._rng.random() < self.share:
                kind, paths = self._deviate_row(index, row)
            self.served.append(Served("historic", (key, start, index), kind, paths))

    def _deviate_row(self, index: int, row: dict[str, Any]) -> tuple[str, tuple[str, ...]]:
        rng = self._rng
        cells: dict[str, Any] = row["values"]
        kind = rng.choice(
            ["number_as_string", "unknown_row_field", "unknown_cell_field", "cell_not_object", "no_values"]
        )
        if kind == "unknown_row_field":
            row[EXTRA_FIELD] = {"n": rng.randint(0, 99)}
            return kind, (json_path(("rows", index, EXTRA_FIELD)),)
        if kind == "no_values":  # the row keeps a field that identifies it
            row["agent"] = row.pop("values")["0"]["value"]
            return kind, (json_path(("rows", index, "values")), json_path(("rows", index, "agent")))
        column = rng.choice([c for c in cells if c != "0"])  # a NUMBER or DURATION column
        where = ("rows", index, "values", column)
        if kind == "number_as_string":
            cells[column]["value"] = str(cells[column]["value"])
            return kind, (json_path((*where, "value")),)
        if kind == "unknown_cell_field":
            cells[column][EXTRA_FIELD] = True
            return kind, (json_path((*where, EXTRA_FIELD)),)
        cells[column] = cells[column]["value"]  # cell_not_object
        return kind, (json_path(where),)

    def _deviate_entry(self, entry: dict[str, Any]) -> tuple[str, tuple[str, ...]]:
        """Make one ``{key, value}`` entry deviate in place; returns the kind and its paths."""
        rng = self._rng
        value: dict[str, Any] = entry["value"]
        fields = [f for f in _VALUE_FIELDS if f in value]
        numbers = [f for f in fields if not isinstance(value[f], str)]
        kinds = ["unknown_field", "unknown_type", "bad_time", "double_encoded"]
        kinds += ["missing_field", "null_field"] if fields else []
        kinds += ["number_as_string"] if numbers else []
        kind = rng.choice(kinds)
        if kind == "unknown_field":
            where: tuple[str, ...] = rng.choice([(), ("key",), ("value",)])
            container = entry if not where else entry[where[0]]
            container[EXTRA_FIELD] = {"note": "not in the document", "n": rng.randint(0, 99)}
            return kind, (json_path((*where, EXTRA_FIELD)),)
        if kind == "unknown_type":
            value["type"] = "PERCENT"
            return kind, ("$.value.type",)
        if kind == "bad_time":
            when = datetime.fromisoformat(value["lastUpdateTime"])
            value["lastUpdateTime"] = when.strftime("%m/%d/%Y %H:%M:%S.%f")  # unique, not ISO-8601
            return kind, ("$.value.lastUpdateTime",)
        if kind == "double_encoded":
            entry["value"] = orjson.dumps(value).decode()
            return kind, ("$.value",)
        if kind == "number_as_string":
            name = rng.choice(numbers)
            number = value[name]
            value[name] = str(number).lower() if isinstance(number, bool) else str(number)
            return kind, (json_path(("value", name)),)
        name = rng.choice(fields)
        if kind == "missing_field":
            del value[name]
        else:
            value[name] = None
        return kind, (json_path(("value", name)),)
