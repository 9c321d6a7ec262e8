"""The hub's feed: the compacted canonical topics, read from the beginning, then live.

Rules:

1. One :class:`~streamd.publish.consume.TopicReader` without a group (every partition assigned,
   nothing committed) reads ``{prefix}agent-state`` and ``{prefix}queue-metrics`` from the
   earliest offset, so a restarted daemon rebuilds the board from the compacted topics at once,
   then follows live.
2. A topic that does not exist yet is looked for again every ``poll_interval`` until it does.
3. Decoding is pure (:meth:`AgentState.from_json <streamd.events.AgentState.from_json>`,
   :func:`decode_metric`): unknown fields are ignored (newer producers), a value that is not a
   valid canonical event is skipped and counted
   (``streamd_errors_total{source="wallboard",stage="decode"}``), a tombstone removes the entry.
   Each decoded record tells the hub its source was heard from at the record's Kafka timestamp
   (the stale markers; a restarted daemon knows at once which sources have been silent).
4. :func:`feed_session` is one plain session: it raises on any failure (Kafka down, a bug) and
   never retries; whoever runs it does (the feed is auxiliary: it never stops the daemon).
5. Records are read :data:`APPLY_SLICE` at a time and applied yielding to the event loop after
   each read and whenever :data:`APPLY_BUDGET` has passed since the last yield: a backlog
   (start-up, after an outage) never stalls the loop. (The Kafka client unpacks, decompresses
   and builds every record a read returns before returning, without yielding when they were
   fetched already: a read of 5,000 was one 20-50 ms step; each applied record is also offered
   to every live-feed client, so its cost grows with the clients.)
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from functools import partial
from typing import Any

import anyio
import anyio.lowlevel
import orjson
from anyio.abc import TaskStatus

from streamd.config_core import KafkaConfig
from streamd.errors import NormalizationError
from streamd.events import AGENT_STATE_TOPIC, QUEUE_METRICS_TOPIC, AgentState, QueueMetric
from streamd.publish.consume import TopicReader
from streamd.retry import Retry, backoff
from streamd.runtime import Job, Jobs
from streamd.telemetry import count_error
from streamd.wallboard.hub import StateHub

log = logging.getLogger("streamd.wallboard")

APPLY_SLICE = 200
"""Most records read from Kafka at once (rule 5)."""
APPLY_BUDGET = 0.002
"""Seconds of applying records between two yields to the event loop (rule 5)."""


class DecodeError(NormalizationError):
    """A record that is not a valid canonical event."""


def _str(obj: dict[str, Any], name: str, required: bool = False) -> str | None:
    value = obj.get(name)
    if value is None:
        if required:
            raise DecodeError(f"missing {name}")
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise DecodeError(f"{name} is not a string")
    return str(value)


def _time(obj: dict[str, Any], name: str) -> datetime | None:
    value = obj.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise DecodeError(f"{name} is not a timestamp")
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise DecodeError(f"{name} is not a timestamp") from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _object(value: bytes) -> dict[str, Any]:
    try:
        obj = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise DecodeError(f"not JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise DecodeError("not a JSON object")
    return obj


def decode_metric(value: bytes) -> QueueMetric:
    """A ``queue-metrics`` record value back into a :class:`QueueMetric`.

    Raises:
        DecodeError: not JSON, or a required field is missing or mistyped.
    """
    obj = _object(value)
    raw = obj.get("value")
    if raw is not None and not isinstance(raw, int | float | str | bool):
        raise DecodeError("value is not a scalar")
    return QueueMetric(
        vendor=sys.intern(_str(obj, "vendor", True) or ""),
        source=sys.intern(_str(obj, "source", True) or ""),
        queue_id=_str(obj, "queue_id", True) or "",
        metric=sys.intern(_str(obj, "metric", True) or ""),
        value=raw,
        unit=_str(obj, "unit"),
        queue_name=_str(obj, "queue_name"),
        as_of=_time(obj, "as_of"),
    )


def record_time(headers: Mapping[str, bytes] | None, timestamp_ms: int | None) -> datetime | None:
    """When the record's event happened: ``ce_time``, else the Kafka timestamp."""
    ce_time = (headers or {}).get("ce_time")
    if ce_time:
        try:
            return datetime.fromisoformat(ce_time.decode())
        except (ValueError, UnicodeDecodeError):
            pass
    if timestamp_ms is not None and timestamp_ms > 0:
        return datetime.fromtimestamp(timestamp_ms / 1000, UTC)
    return None


def published_time(timestamp_ms: int | None) -> datetime:
    """When a record was published (its Kafka timestamp), else now: a source's freshness."""
    if timestamp_ms is not None and timestamp_ms > 0:
        return datetime.fromtimestamp(timestamp_ms / 1000, UTC)
    return datetime.now(UTC)


def apply_record(
    hub: StateHub,
    kind: str,
    key: bytes | None,
    value: bytes | None,
    headers: Mapping[str, bytes] | None = None,
    timestamp_ms: int | None = None,
) -> bool:
    """Apply one record of the ``agent-state`` (kind ``agent``) or ``queue-metrics`` topic.

    Returns True when the hub changed. Undecodable records are counted and skipped; every
    decodable one counts as news from its source (:meth:`StateHub.touch`), changed or not.
    """
    text_key = key.decode("utf-8", "replace") if key else None
    try:
        if value is None:  # a tombstone on the compacted topic
            if text_key is None:
                raise DecodeError("tombstone without a key")
            return hub.remove("agent" if kind == "agent" else "metric", text_key)
        published = published_time(timestamp_ms)
        if kind == "agent":
            agent = AgentState.from_json(value)
            hub.touch(agent.source, published)
            return hub.update_agent(agent, observed=record_time(headers, timestamp_ms), key=text_key)
        metric = decode_metric(value)
        hub.touch(metric.source, published)
        return hub.update_metric(metric, key=text_key)
    except NormalizationError as exc:
        count_error("wallboard", "decode", "invalid_event")
        log.debug("skipping an undecodable %s record: %s", kind, exc)
        return False


async def feed_session(
    hub: StateHub, kafka: KafkaConfig, connected: Callable[[], None], *, poll_interval: float = 1.0
) -> None:
    """Feed ``hub`` until something fails (rule 4); ``connected()`` once partitions are assigned.

    Args:
        hub: the state hub to update.
        kafka: the Kafka section, with the resolved bootstrap servers.
        connected: called each time topics were assigned (the session is healthy).
        poll_interval: how often to look for topics that do not exist yet.

    Raises:
        TransientError: Kafka failed.
    """
    kinds = {
        kafka.topic_prefix + AGENT_STATE_TOPIC: "agent",
        kafka.topic_prefix + QUEUE_METRICS_TOPIC: "metric",
    }
    async with TopicReader(kafka, list(kinds)) as reader:
        next_check = 0.0
        while True:
            if reader.missing and anyio.current_time() >= next_check:
                next_check = anyio.current_time() + poll_interval
                if added := await reader.assign():
                    log.info("wallboard feed reading %s", ", ".join(added))
                    connected()
            records = await reader.read(wait=min(poll_interval, 1.0), max_records=APPLY_SLICE)
            if not records:
                continue
            clock = anyio.current_time
            until = clock() + APPLY_BUDGET
            for r in records:
                apply_record(hub, kinds[r.topic], r.key, r.value, r.headers, r.timestamp_ms)
                if clock() >= until:  # a backlog (start, after an outage) never stalls the loop
                    await anyio.lowlevel.checkpoint()
                    until = clock() + APPLY_BUDGET
            await anyio.lowlevel.checkpoint()  # the read itself may not have yielded (rule 5)


def feed_job(
    hub: StateHub,
    kafka: KafkaConfig,
    *,
    poll_interval: float = 1.0,
    delays: Callable[[], Iterator[float]] = lambda: backoff(cap=10.0),
) -> Job:
    """:func:`feed_session` as a supervised job: any failure, a bug included, is retried with
    ``delays`` (the feed is auxiliary: it never fails for good and never stops the daemon)."""
    return Job(
        "feed",
        partial(feed_session, hub, kafka, poll_interval=poll_interval),
        decide=lambda _: Retry(),
        delays=delays,
        catch=(Exception,),
    )


async def run_feed(
    hub: StateHub,
    kafka: KafkaConfig,
    *,
    jobs: Jobs | None = None,
    poll_interval: float = 1.0,
    delays: Callable[[], Iterator[float]] = lambda: backoff(cap=10.0),
    extra: Sequence[Job] = (),
    task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Run :func:`feed_job` (and the ``extra`` jobs of the same component, e.g. the placement)
    under ``jobs`` (default: standalone) until cancelled; reports started at once, so a daemon
    never waits for Kafka or the topics to show the wallboard."""
    task_status.started()
    jobs = jobs or Jobs.standalone("wallboard", "feed")
    await jobs.run(feed_job(hub, kafka, poll_interval=poll_interval, delays=delays), *extra)
