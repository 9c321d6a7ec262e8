"""Reading one call-finished push (WebService Integration, seed 000 L1030-1062) into an event (pure).

Rules:

1. The guide fixes no payload: a profile sends the call data its admin chose as URL parameters
   (and custom headers). Every parameter is kept in ``fields`` as received; a form
   (``application/x-www-form-urlencoded``) or JSON-object body adds its fields too (an admin may
   choose POST with a body template). Nothing is typed but the call id.
2. Routing needs only the call id: the configured ``call_id_field`` (default ``callId``), in the
   parameters or the body. Without a non-empty one the push is a dead letter (``missing_key``).
3. Tolerant reading (:mod:`streamd.tolerant`): what deviates is published with its JSON paths in
   ``streamd_deviations``: a field sent more than once (kept as the list of its values; the call
   id is its first value), a body that is neither a form nor a JSON object (kept as text in
   ``extra.body``).
4. The event is ``xima.calls.CallFinished`` on ``{prefix}xima.calls``, key ``{source}:{callId}``,
   id ``stable_id(source, "call", call id, fields)``: a profile that sends the same record again
   gives the same ``ce_id``, so consumers can tell repeats.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl

import orjson

from streamd.errors import NormalizationError
from streamd.events import Event, stable_id
from streamd.sources.xima.models import CALL_FINISHED_TYPE, CALLS_TOPIC, CallFinished
from streamd.tolerant import MAX_PATHS, json_path


def _body_fields(body: bytes, content_type: str) -> tuple[list[tuple[str, Any]], str | None]:
    """The body's ``(name, value)`` pairs, or ``([], text)`` when the body is neither a form nor a
    JSON object (rule 3)."""
    if not body.strip():
        return [], None
    kind = content_type.split(";", 1)[0].strip().lower()
    text = body.decode("utf-8", "replace")
    if kind == "application/x-www-form-urlencoded":
        return parse_qsl(text, keep_blank_values=True), None
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        return [], text
    if isinstance(parsed, dict):
        return list(parsed.items()), None
    return [], text


def _merge(pairs: Iterable[tuple[str, Any]], paths: list[str]) -> dict[str, Any]:
    """Pairs into fields; a name seen again becomes the list of its values (listed once)."""
    fields: dict[str, Any] = {}
    repeated: set[str] = set()
    for name, value in pairs:
        if name not in fields:
            fields[name] = value
            continue
        if name not in repeated:
            repeated.add(name)
            fields[name] = [fields[name]]
            paths.append(json_path(("fields", name)))
        fields[name].append(value)
    return fields


def call_event(
    source: str,
    *,
    call_id_field: str,
    method: str,
    query: Iterable[tuple[str, str]],
    body: bytes,
    content_type: str,
    now: datetime,
) -> Event:
    """The ``xima.calls.CallFinished`` event of one push (module rules).

    Raises:
        NormalizationError: no usable call id (``missing_key``).
    """
    paths: list[str] = []
    extra: dict[str, Any] = {}
    pairs, unreadable = _body_fields(body, content_type)
    if unreadable is not None:
        extra["body"] = unreadable
        paths.append("$.extra.body")
    fields = _merge([*query, *pairs], paths)
    raw_id = fields.get(call_id_field)
    first = raw_id[0] if isinstance(raw_id, list) and raw_id else raw_id
    call_id = "" if first is None or isinstance(first, dict | list) else str(first).strip()
    if not call_id:
        raise NormalizationError(
            f"call-finished push without a call id (no {call_id_field!r} parameter or body field)",
            "missing_key",
        )
    data = CallFinished(
        source=source,
        call_id=call_id,
        fields=fields,
        method=method,
        received_at=now.isoformat(timespec="milliseconds"),
        extra=extra,
    )
    identity = orjson.dumps(fields, option=orjson.OPT_SORT_KEYS).decode()
    deviations = tuple(paths) if len(paths) <= MAX_PATHS else (*paths[:MAX_PATHS], "...")
    return Event(
        topic=CALLS_TOPIC,
        type=CALL_FINISHED_TYPE,
        source=source,
        key=f"{source}:{call_id}",
        data=data,
        time=now,
        id=stable_id(source, "call", call_id, identity),
        deviations=deviations,
    )
