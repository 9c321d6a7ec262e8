"""Pure encoding of events into Kafka records (README "The Kafka contract": what consumers code against).

Rules:

1. Value: orjson of ``event.data`` (dataclasses, datetimes, enums, pydantic models supported).
2. Key: ``event.key`` as UTF-8; topic: prefix + ``event.topic``.
3. Headers: CloudEvents 1.0 Kafka binary mode — ``ce_specversion``, ``ce_id``, ``ce_source``,
   ``ce_type``, ``ce_time``, ``ce_subject`` (= key), ``content-type`` — plus
   ``streamd_snapshot: true`` on snapshot events, and ``streamd_deviations`` (a JSON array of
   JSON paths, :mod:`streamd.tolerant`) on events whose vendor input deviated from its document.
4. ``ce_id`` is the event's deterministic id when it has one, otherwise unique: a random
   per-process prefix and a counter.
5. ``kafka.value_format: confluent-json`` (:func:`confluent_json`): the value is framed in
   Confluent's wire format, byte 0 then the topic's 4-byte big-endian schema id (registered at
   start by :mod:`streamd.publish.registry`) then the same JSON; the headers are the same. It wraps
   :func:`encode`, which stays the plain-JSON hot path.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

import orjson
from pydantic import BaseModel

from streamd.events import Event

Headers = list[tuple[str, bytes]]
Encode = Callable[["Event", str], "Record"]
"""``encode(event, prefix)``: the pipeline's record encoder (:func:`encode` or :func:`confluent_json`'s)."""

_SPEC = ("ce_specversion", b"1.0")
_CONTENT_TYPE = ("content-type", b"application/json")
_SNAPSHOT = ("streamd_snapshot", b"true")
_OPTS = orjson.OPT_UTC_Z | orjson.OPT_NON_STR_KEYS


@dataclass(frozen=True, slots=True)
class Record:
    """One Kafka record, ready to send."""

    topic: str
    key: bytes
    value: bytes
    headers: Headers


_new_object = object.__new__
# The slot setters of Record's fields, in order (unpacking fails at import if the fields change).
_set_topic, _set_key, _set_value, _set_headers = (Record.__dict__[f.name].__set__ for f in fields(Record))


def _new_record(topic: str, key: bytes, value: bytes, headers: Headers) -> Record:
    """``Record(...)`` without the frozen ``__init__``'s ``object.__setattr__`` per field (~2x faster)."""
    record: Record = _new_object(Record)
    _set_topic(record, topic)
    _set_key(record, key)
    _set_value(record, value)
    _set_headers(record, headers)
    return record


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


class _HeaderCache(dict[str, tuple[str, bytes]]):
    """``value -> (header, encoded value)``, built on first use: events share few sources and types.

    Header tuples are immutable, so every record of a type shares one. At most ``limit`` values are
    kept (a value beyond that is encoded each time), so no input can grow the cache without bound.
    """

    def __init__(self, header: str, template: str, limit: int = 4096) -> None:
        super().__init__()
        self.header, self.template, self.limit = header, template, limit

    def __missing__(self, value: str) -> tuple[str, bytes]:
        pair = (self.header, self.template.format(value).encode())
        if len(self) < self.limit:
            self[value] = pair
        return pair


class _Encoder:
    """Per-process caches for the hot path: events of one chunk share their time and source."""

    def __init__(self) -> None:
        # Random ids for push events: a per-process random prefix and a counter are unique and
        # far cheaper than uuid4 per event.
        self.id_prefix = os.urandom(6).hex().encode()
        self.ids = itertools.count()
        self.last_time: datetime | None = None
        self.last_time_header = ("ce_time", b"")
        self.sources = _HeaderCache("ce_source", "streamd/{}")
        self.types = _HeaderCache("ce_type", "{}")

    def time(self, when: datetime) -> tuple[str, bytes]:
        if when is not self.last_time:
            self.last_time, self.last_time_header = when, ("ce_time", format_time(when))
        return self.last_time_header

    def new_id(self) -> bytes:
        return b"%s%010x" % (self.id_prefix, next(self.ids))


_ENC = _Encoder()


def encode(event: Event, prefix: str) -> Record:
    """Encode one event into its topic, key, value and CloudEvents headers."""
    key = event.key.encode()
    headers: Headers = [
        _SPEC,
        ("ce_id", event.id.encode() if event.id else _ENC.new_id()),
        _ENC.sources[event.source],
        _ENC.types[event.type],
        _ENC.time(event.time),
        ("ce_subject", key),
        _CONTENT_TYPE,
    ]
    if event.snapshot:
        headers.append(_SNAPSHOT)
    if event.deviations:
        headers.append(("streamd_deviations", orjson.dumps(event.deviations)))
    value = orjson.dumps(event.data, default=_default, option=_OPTS)  # = dumps(), inlined: hot path
    return _new_record(prefix + event.topic, key, value, headers)


CONFLUENT_MAGIC = 0


def confluent_frame(schema_id: int) -> bytes:
    """The 5 bytes Confluent's wire format puts before a value: byte 0 and the big-endian schema id."""
    return bytes((CONFLUENT_MAGIC,)) + schema_id.to_bytes(4, "big")


def confluent_json(ids: Mapping[str, int]) -> Encode:
    """An encoder like :func:`encode` whose values are in Confluent's wire format (rule 5).

    Args:
        ids: full topic name (prefix included) -> the schema id registered under ``{topic}-value``.

    The returned function raises ``ValueError`` for a topic without a schema id (the pipeline
    dead-letters such an event, naming the topic).
    """
    frames = {topic: confluent_frame(schema_id) for topic, schema_id in ids.items()}

    def encode_framed(event: Event, prefix: str) -> Record:
        record = encode(event, prefix)
        frame = frames.get(record.topic)
        if frame is None:
            raise ValueError(
                f"topic {record.topic} has no schema registered in the Schema Registry (value_format: "
                "confluent-json); streamd registers the topics of the event types it knows at start"
            )
        return _new_record(record.topic, record.key, frame + record.value, record.headers)

    return encode_framed


def header_dict(headers: Headers | list[tuple[str, bytes | None]] | None) -> dict[str, str]:
    """Headers as a ``str -> str`` dict (for consumers such as ``streamd tail`` and tests)."""
    return {k: (v or b"").decode() for k, v in headers or []}
