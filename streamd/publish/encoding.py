"""Pure encoding of events into Kafka records (DESIGN §3, the contract consumers code against).

Rules:

1. Value: orjson of ``event.data`` (dataclasses, datetimes, enums, pydantic models supported).
2. Key: ``event.key`` as UTF-8; topic: prefix + ``event.topic``.
3. Headers: CloudEvents 1.0 Kafka binary mode — ``ce_specversion``, ``ce_id``, ``ce_source``,
   ``ce_type``, ``ce_time``, ``ce_subject`` (= key), ``content-type`` — plus
   ``streamd_snapshot: true`` on snapshot events.
4. ``ce_id`` is the event's deterministic id when it has one, otherwise unique: a random
   per-process prefix and a counter.
"""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from pydantic import BaseModel

from streamd.events import Event

Headers = list[tuple[str, bytes]]

_SPEC = b"1.0"
_JSON = b"application/json"
_TRUE = b"true"
_OPTS = orjson.OPT_UTC_Z | orjson.OPT_NON_STR_KEYS


@dataclass(frozen=True, slots=True)
class Record:
    """One Kafka record, ready to send."""

    topic: str
    key: bytes
    value: bytes
    headers: Headers


def _default(obj: Any) -> Any:
    if isinstance(obj, BaseModel):
        return obj.model_dump(mode="json", by_alias=True, exclude_unset=True)
    if isinstance(obj, tuple | set | frozenset):
        return list(obj)
    if isinstance(obj, bytes):
        return obj.decode("utf-8", "replace")
    raise TypeError(f"cannot encode {type(obj).__name__} as JSON")


def dumps(data: Any) -> bytes:
    """JSON-encode an event's data the way every Kafka value is encoded."""
    return orjson.dumps(data, default=_default, option=_OPTS)


def format_time(when: datetime) -> bytes:
    """RFC 3339 timestamp for ``ce_time``."""
    return orjson.dumps(when, option=orjson.OPT_UTC_Z)[1:-1]


class _Encoder:
    """Per-process caches for the hot path: events of one chunk share their time and source."""

    def __init__(self) -> None:
        # Random ids for push events: a per-process random prefix and a counter are unique and
        # far cheaper than uuid4 per event.
        self.id_prefix = os.urandom(6).hex()
        self.ids = itertools.count()
        self.last_time: datetime | None = None
        self.last_time_bytes = b""
        self.sources: dict[str, bytes] = {}

    def time(self, when: datetime) -> bytes:
        if when is not self.last_time:
            self.last_time, self.last_time_bytes = when, format_time(when)
        return self.last_time_bytes

    def source(self, name: str) -> bytes:
        cached = self.sources.get(name)
        if cached is None:
            cached = self.sources[name] = f"streamd/{name}".encode()
        return cached

    def new_id(self) -> bytes:
        return f"{self.id_prefix}{next(self.ids):010x}".encode()


_ENC = _Encoder()


def encode(event: Event, prefix: str) -> Record:
    """Encode one event into its topic, key, value and CloudEvents headers."""
    key = event.key.encode()
    headers: Headers = [
        ("ce_specversion", _SPEC),
        ("ce_id", event.id.encode() if event.id else _ENC.new_id()),
        ("ce_source", _ENC.source(event.source)),
        ("ce_type", event.type.encode()),
        ("ce_time", _ENC.time(event.time)),
        ("ce_subject", key),
        ("content-type", _JSON),
    ]
    if event.snapshot:
        headers.append(("streamd_snapshot", _TRUE))
    return Record(prefix + event.topic, key, dumps(event.data), headers)


def header_dict(headers: Headers | list[tuple[str, bytes | None]] | None) -> dict[str, str]:
    """Headers as a ``str -> str`` dict (for consumers such as ``streamd tail`` and tests)."""
    return {k: (v or b"").decode() for k, v in headers or []}
