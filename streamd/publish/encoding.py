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
6. The hot path shares what records have in common, never changing a byte: header pairs of a
   source, type, key and time, topic names and key bytes are cached (bounded); frozen slotted
   dataclasses are written through a dict of their fields and str-keyed dicts without
   ``OPT_NON_STR_KEYS`` (:func:`dumps`), both exactly as orjson writes them otherwise.
7. A :class:`Record` is a ``msgspec.Struct(frozen=True, gc=False, array_like=True)``: immutable
   like the frozen dataclass it was (equal, positional and keyword construction alike), never
   tracked by the cyclic garbage collector, which otherwise scans every record in flight at each
   collection, and written by msgspec as the array ``[topic, key, value, headers]`` (the
   write-ahead packs records so, :func:`streamd.publish.spool.pack`).
8. A record's headers are a tuple of ``(name, value)`` pairs, never a list: the collector stops
   tracking a tuple of strings and bytes at its first pass, where a list stays tracked, and is
   scanned again at every pass, for as long as its record waits for Kafka (a record in flight
   was ~2 tracked objects; measured on the O2G chunk path: ~1 us CPU per record less). aiokafka
   wants a list: :mod:`streamd.publish.kafka` makes one as it sends (a list that dies at once);
   tracing makes new records with its headers added.
9. Every header value is UTF-8: the encoding of a ``str`` (ids, source, type, key, the
   deviations' JSON) or a constant; ``ce_time`` and random ids are ASCII. The write-ahead relies on
   it (:func:`streamd.publish.spool.pack`'s ``encoded``), as the spool keeps headers as JSON text.
10. A record's value is exactly as large as its JSON: orjson (3.12 on) returns ``bytes`` whose
    allocation is at least 4 KiB and never shrunk, so a 200-byte value held while its record
    waits for Kafka kept 4 KiB (at the pipeline's bound of 20,000 events in memory ~80 MB; before
    that bound, a 95,000-record backlog held ~390 MB). :func:`encode` copies each value to its
    size (``b"".join``, ~0.1 µs), as Home Assistant trims the orjson output it keeps; so do
    :func:`dumps` (the wallboard keeps its changes' JSON in the replay buffer and each client's)
    and the ``streamd_deviations`` header (cached per set of paths). orjson's over-allocation
    grows with the output (a 1 KB value held ~65 KB), so larger values gained more.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import fields
from datetime import datetime
from typing import Any

import msgspec
import orjson
from pydantic import BaseModel

from streamd.events import Event

Headers = tuple[tuple[str, bytes], ...]
Encode = Callable[["Event", str], "Record"]
"""``encode(event, prefix)``: the pipeline's record encoder (:func:`encode` or :func:`confluent_json`'s)."""

_SPEC = ("ce_specversion", b"1.0")
_CONTENT_TYPE = ("content-type", b"application/json")
_SNAPSHOT = ("streamd_snapshot", b"true")
_OPTS = orjson.OPT_UTC_Z | orjson.OPT_NON_STR_KEYS
_STR_KEYS_OPTS = orjson.OPT_UTC_Z
"""Without ``OPT_NON_STR_KEYS`` orjson writes str-keyed dicts ~40 % faster, the same bytes."""


_join = b"".join


def right_sized(value: bytes) -> bytes:
    """A copy of ``value`` exactly as large as it is (rule 10: orjson's bytes are 4 KiB or more)."""
    return _join((value, b""))


class Record(msgspec.Struct, frozen=True, gc=False, array_like=True):
    """One Kafka record, ready to send.

    Never tracked by the cyclic garbage collector (``gc=False``, rule 7): a record holds only
    strings, bytes and its headers tuple, so it cannot be part of a reference cycle, and the
    collector does not scan the records in flight again and again.
    """

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


class _FieldDicts(dict[type, Callable[[Any], dict[str, Any]] | None]):
    """``type -> a function giving an instance's fields as a dict``, or None to encode it as it is.

    orjson writes a slotted dataclass by looking up each field's definition and value by name
    (~1 µs for a canonical event); a dict of its fields, built by a function generated per class,
    gives the same bytes (the same keys in the same order, each value written the same way) in
    about 60 % of the time. Only frozen slotted dataclasses are converted (orjson writes their
    fields exactly so: ``dataclasses.fields`` order, names starting with ``_`` left out); at most
    ``limit`` types are kept.
    """

    limit = 256

    def __missing__(self, cls: type) -> Callable[[Any], dict[str, Any]] | None:
        convert = None
        params = getattr(cls, "__dataclass_params__", None)
        if params is not None and params.frozen and "__slots__" in cls.__dict__ and _all_slots(cls):
            names = [f.name for f in fields(cls) if not f.name.startswith("_")]
            body = ", ".join(f"{name!r}: obj.{name}" for name in names)
            namespace: dict[str, Any] = {}
            exec(f"def field_dict(obj):\n    return {{{body}}}\n", namespace)  # field names are identifiers
            convert = namespace["field_dict"]
        if len(self) < self.limit:
            self[cls] = convert
        return convert


def _all_slots(cls: type) -> bool:
    """No class of ``cls``'s MRO gives its instances a ``__dict__`` (orjson would write that)."""
    return all("__slots__" in c.__dict__ for c in cls.__mro__[:-1])


_FIELD_DICTS = _FieldDicts()


def dumps(data: Any) -> bytes:
    """JSON-encode an event's data the way every Kafka value is encoded (rule 1)."""
    if type(data) is not dict:
        convert = _FIELD_DICTS[type(data)]
        if convert is not None:
            data = convert(data)
    try:
        value = orjson.dumps(data, default=_default, option=_STR_KEYS_OPTS)
    except orjson.JSONEncodeError:  # a key that is not a str (or data orjson cannot write at all)
        value = orjson.dumps(data, default=_default, option=_OPTS)
    return right_sized(value)  # rule 10: the wallboard keeps what it encodes (replay, buffers)


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


class _SubjectCache(_HeaderCache):
    """A :class:`_HeaderCache` of keys: the records of an entity share its pair. Keys come and go
    (calls, agents), so a full cache starts again rather than keeping the first ``limit`` forever."""

    def __missing__(self, value: str) -> tuple[str, bytes]:
        if len(self) >= self.limit:
            self.clear()
        return super().__missing__(value)


class _TopicCache(dict[str, tuple[str, str]]):
    """``topic -> (prefix, prefix + topic)``: records of a topic share one name (no concatenation,
    its hash computed once). A new prefix replaces the entry; at most ``limit`` topics are kept."""

    limit = 1024

    def full(self, prefix: str, topic: str) -> str:
        name = prefix + topic
        if len(self) < self.limit:
            self[topic] = (prefix, name)
        return name


# Per-process caches of the hot path: events share few sources, types, keys, topics, and the
# events of one chunk share their time.
_SOURCES = _HeaderCache("ce_source", "streamd/{}")
_TYPES = _HeaderCache("ce_type", "{}")
_SUBJECTS = _SubjectCache("ce_subject", "{}", limit=20_000)
"""``key -> ("ce_subject", key as UTF-8)``: the pair's bytes are the record's key too."""
_TOPICS = _TopicCache()


class _DeviationsCache(dict[tuple[str, ...], tuple[str, bytes]]):
    """``deviations -> ("streamd_deviations", their JSON, right-sized)``: the events of a vendor
    deviate in the same few ways (rule 10: each record in flight would otherwise hold 4 KiB for
    this header too); at most ``limit`` sets are kept."""

    limit = 1024

    def __missing__(self, paths: tuple[str, ...]) -> tuple[str, bytes]:
        pair = ("streamd_deviations", right_sized(orjson.dumps(paths)))
        if len(self) < self.limit:
            self[paths] = pair
        return pair


_DEVIATIONS = _DeviationsCache()
_last_time: tuple[datetime | None, tuple[str, bytes]] = (None, ("ce_time", b""))
# Random ids for push events: a per-process random prefix and a counter are unique and far
# cheaper than uuid4 per event; each ``next()`` is a new ("ce_id", id) pair, made in C.
_ID_PREFIX = os.urandom(6).hex().encode()
_NEW_IDS = zip(itertools.repeat("ce_id"), map((_ID_PREFIX + b"%010x").__mod__, itertools.count()))


def encode(event: Event, prefix: str) -> Record:
    """Encode one event into its topic, key, value and CloudEvents headers."""
    global _last_time
    subject = _SUBJECTS[event.key]
    when = event.time
    cached_time = _last_time
    if cached_time[0] is not when:
        cached_time = _last_time = (when, ("ce_time", format_time(when)))
    id = event.id
    headers: Headers = (
        _SPEC,
        ("ce_id", id.encode()) if id else next(_NEW_IDS),
        _SOURCES[event.source],
        _TYPES[event.type],
        cached_time[1],
        subject,
        _CONTENT_TYPE,
    )
    if event.snapshot:
        headers += (_SNAPSHOT,)
    if event.deviations:
        headers += (_DEVIATIONS[event.deviations],)
    topic = _TOPICS.get(event.topic)
    name = topic[1] if topic is not None and topic[0] == prefix else _TOPICS.full(prefix, event.topic)
    data = event.data
    if type(data) is not dict:  # = dumps(), inlined: hot path
        convert = _FIELD_DICTS[type(data)]
        if convert is not None:
            data = convert(data)
    try:
        value = orjson.dumps(data, default=_default, option=_STR_KEYS_OPTS)
    except orjson.JSONEncodeError:
        value = orjson.dumps(data, default=_default, option=_OPTS)
    return Record(name, subject[1], _join((value, b"")), headers)  # = right_sized(value), inlined: hot path


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
        return Record(record.topic, record.key, frame + record.value, record.headers)

    return encode_framed


def header_dict(
    headers: Sequence[tuple[str, bytes]] | Sequence[tuple[str, bytes | None]] | None,
) -> dict[str, str]:
    """Headers as a ``str -> str`` dict (for consumers such as ``streamd tail`` and tests)."""
    return {k: (v or b"").decode() for k, v in headers or []}
