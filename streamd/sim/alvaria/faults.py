"""What a test scripts to go wrong on the Alvaria simulator (on :class:`streamd.sim.script.FaultScript`).

Rules:

1. Faults are keyed by :func:`where`: ``query@scope`` (one teamId / workTypeId / contactList of
   one query), ``query`` (every scope of it; a query name, ``token``, ``teams``, ``workTypes`` or
   ``lists``) or :data:`ANY` (any request). A request takes the oldest fault of its most specific
   key. ``times=None`` keeps a fault until it is cleared: an outage (one team's data store down).
2. :func:`error` answers with the guide's error schema: ``ErrorResponse``
   (``{"error": "Service Unavailable"}``), or ``ErrorResponseObj`` (``{"code", "message",
   "errors"}``, 003 L694-725) when ``code`` or ``message`` is given; 429 / 503 may carry
   ``Retry-After`` (seconds or an HTTP date). A plain :class:`~streamd.sim.script.Fault` answers
   exactly what it says (a 200 with a garbled body, a slow 503...).
3. Data deviations (:func:`deviate_row`) make rows differ from seed 003 the way real servers do:
   numbers as text or as ``5.0``, text where a number belongs, a number where text belongs, an
   object or a list for a scalar, a date-time that is not one, unknown fields. Key fields
   (:data:`~.guide.ROW_KEYS`) are never touched, so every row stays routable.
4. The request log is the shared :class:`~streamd.sim.script.RequestLog`; :func:`query_of` and
   :func:`scope_of` say which query and scope a logged request asked for.
"""

from __future__ import annotations

import random
from typing import Any

import orjson

from streamd.sim.alvaria.guide import ERROR_TEXT, GUIDE_FIELDS, ROW_KEYS, SCOPE_FIELDS, TOKEN_PATH
from streamd.sim.script import Fault, LoggedRequest

ANY = "*"
"""The key of a fault for any request."""

SCOPE_NAMES = ("teamId", "workTypeId", "contactList")


def where(query: str, scope: str | None = None) -> str:
    """The fault key of ``query`` (for one ``scope``, if given): ``userActivity@team1``."""
    return f"{query}@{scope}" if scope is not None else query


def error(
    status: int,
    *,
    retry_after: str | None = None,
    code: int | None = None,
    message: str | None = None,
    delay: float = 0.0,
) -> Fault:
    """A refusal with the guide's error body (rule 2), after ``delay`` seconds."""
    if code is None and message is None:
        body = orjson.dumps({"error": ERROR_TEXT.get(status, f"HTTP {status}")})
    else:
        item = {"scope": "reporting", "reason": ERROR_TEXT.get(status, ""), "message": message}
        body = orjson.dumps({"code": code, "message": message, "errors": [item]})
    headers = {"Retry-After": retry_after} if retry_after is not None else {}
    return Fault(status, body, headers=headers, delay=delay)


def query_of(entry: LoggedRequest) -> str:
    """The query a logged request asked for: a query name, ``presence``, ``token``, ``teams``,
    ``workTypes``, ``lists``, or its path when it is none of them."""
    path = entry.path
    if path == TOKEN_PATH:
        return "token"
    if path.endswith("/reporting/presence/users/data"):
        return "presence"
    if "/reporting/queries/" in path:
        return path.split("/reporting/queries/", 1)[1].split("/", 1)[0]
    for suffix, name in (("/provisioning/teams", "teams"), ("/provisioning/workTypes", "workTypes")):
        if path.endswith(suffix):
            return name
    if path.endswith("/campaign/lists"):
        return "lists"
    return path


def scope_of(entry: LoggedRequest) -> str | None:
    """The teamId / workTypeId / contactList a logged request polled, if any."""
    params = entry.params
    return next((params[n] for n in SCOPE_NAMES if n in params), None)


def row_key(query: str, row: dict[str, Any], scope: str | None) -> str:
    """The row's identity (:data:`ROW_KEYS`) as ``a:b``; a missing scope field is the polled scope."""
    parts = []
    for name in ROW_KEYS[query]:
        value = row.get(name)
        if value is None or value == "":
            value = scope if name == SCOPE_FIELDS.get(query) and scope is not None else ""
        parts.append(str(value))
    return ":".join(parts)


def _deviant(kind: str, value: Any, rng: random.Random) -> Any:
    """A deviating stand-in for ``value`` of a field documented as ``kind``."""
    if kind == "int":
        return rng.choice(
            (str(value), float(value) if isinstance(value, int) else "1.0", "n/a", {"value": value})
        )
    if kind == "datetime":
        return rng.choice(("soon", {"at": value}, ["2018-02-07T11:29:46Z"]))
    return rng.choice((len(str(value)) + 0.5, [value], {"text": value}))


def deviate_row(
    query: str, row: dict[str, Any], rng: random.Random
) -> tuple[dict[str, Any], tuple[str, ...]]:
    """A copy of ``row`` with one to three deviating fields (and maybe an unknown one).

    Returns the copy and the JSON paths that deviate (``$.stateDur``); the key fields of the query
    (:data:`ROW_KEYS`) are never touched.
    """
    types = GUIDE_FIELDS[query]
    keys = set(ROW_KEYS[query])
    candidates = [name for name in row if name in types and name not in keys]
    out = dict(row)
    paths: list[str] = []
    for name in rng.sample(candidates, k=min(len(candidates), rng.randint(1, 3))):
        out[name] = _deviant(types[name], row[name], rng)
        paths.append(f"$.{name}")
    if not paths or rng.random() < 0.5:
        out["vendorExtension"] = {"level": [1, {"deep": True}], "note": None}
        paths.append("$.vendorExtension")
    return out, tuple(paths)
