"""What every Calabrio answer is read with: the array check, row routing, ids, dead letters.

Rules: see :mod:`streamd.sources.calabrio.normalize` (rules 2 and 4); everything here is pure.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Final

import orjson

from streamd.errors import VendorProtocolError
from streamd.events import DEADLETTER_TOPIC, DeadLetter, Event
from streamd.jsonwire import loads
from streamd.telemetry import count_error
from streamd.tolerant import MAX_PATHS

AGENT_ID_NAMES: Final = ("agentId", "agentld")
"""The documented name of a row's agent id, then the seed's OCR spelling (models rule 2)."""


class UnreadableAnswer(VendorProtocolError):
    """A 200 answer whose body cannot be read as the documented JSON array (rule 4): retried."""


_JSON_KINDS: Final[Mapping[type, str]] = {
    dict: "an object",
    str: "a string",
    int: "a number",
    float: "a number",
    bool: "true/false",
    type(None): "null",
}


def dead_letter(source: str, error_type: str, error: str, raw: bytes | str | Any) -> Event:
    """A dead-letter event for an input that could not be processed."""
    if not isinstance(raw, bytes | str):
        raw = orjson.dumps(raw, default=str).decode()
    return DeadLetter.of(
        source=source, stage="processing", error_type=error_type, error=error, raw=raw
    ).to_event()


def count_dead_letters(source: str, events: Sequence[Event]) -> None:
    """Count each dead-letter event among ``events`` (nothing is dropped silently)."""
    for event in events:
        if event.topic == DEADLETTER_TOPIC:
            count_error(source, "processing", event.data.error_type)


def json_array(body: bytes, what: str) -> list[Any]:
    """The JSON array ``body`` holds (rule 4).

    Raises:
        UnreadableAnswer: ``body`` is an HTML page, not JSON, or JSON but not an array; the
            message names which, with the start of what was received.
    """
    if body.lstrip()[:1] == b"<":
        problem = "an HTML page (a login page or a proxy's error page?), not JSON"
    else:
        try:
            data = loads(body)  # integers beyond 64 bits stay exact
        except orjson.JSONDecodeError as exc:
            problem = f"not JSON ({exc})"
        else:
            if isinstance(data, list):
                return data
            problem = f"JSON {_JSON_KINDS.get(type(data), 'a value')}, not an array"
    received = body[:120].decode("utf-8", "replace")
    raise UnreadableAnswer(f"{what}: the answer is {problem}: {received!r}")


def routed_rows(
    source: str, rows: Iterable[Any], what: str, dead: list[Event], names: tuple[str, ...] = AGENT_ID_NAMES
) -> Iterator[tuple[str, dict[str, Any]]]:
    """Each row that is an object with a usable agent id, with that id as key text (rules 2, 4).

    The other rows become dead letters appended to ``dead``: ``invalid_payload`` for a row that
    is not an object, ``missing_key`` for one without a usable id (the first of ``names`` present).
    """
    for row in rows:
        if not isinstance(row, dict):
            dead.append(dead_letter(source, "invalid_payload", f"{what}: expected an object", row))
            continue
        agent_id = agent_key(first_of(row, *names))
        if agent_id is None:
            error = f"{what}: agentId is missing or not a string or number"
            dead.append(dead_letter(source, "missing_key", error, row))
            continue
        yield agent_id, row


def agent_key(value: Any) -> str | None:
    """An agent id as key text: a non-empty string, an integer, or an integral number; else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        return value or None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return None


def first_of(obj: Mapping[str, Any], *names: str) -> Any:
    """The value of the first of ``names`` present in ``obj`` (the documented name, then aliases)."""
    for name in names:
        if name in obj:
            return obj[name]
    return None


def ident_text(value: Any) -> Any:
    """An id or code as published: integers as text (a documented variant), anything else as is."""
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


def epoch_ms(value: Any) -> int | None:
    """``value`` when it is an integer epoch-ms timestamp a datetime can hold, else None."""
    if not isinstance(value, int) or isinstance(value, bool):
        return None
    try:
        datetime.fromtimestamp(value / 1000, UTC)
    except (OverflowError, ValueError, OSError):
        return None
    return value


def json_text(value: Any) -> str:
    """``value`` as compact JSON text."""
    return orjson.dumps(value, default=str).decode()


def bounded(paths: tuple[str, ...]) -> tuple[str, ...]:
    """At most :data:`~streamd.tolerant.MAX_PATHS` paths, then ``"..."`` (as the reader does)."""
    paths = tuple(p for p in paths if p != "...") if len(paths) > MAX_PATHS else paths
    return paths if len(paths) <= MAX_PATHS else (*paths[:MAX_PATHS], "...")
