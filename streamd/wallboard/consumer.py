"""The hub's feed: the compacted canonical topics, read from the beginning, then live.

Rules:

1. One aiokafka consumer without a group (``assign()`` of every partition, nothing committed),
   configured through :func:`~streamd.publish.kafka.client_kwargs` like every streamd client. It
   reads ``{prefix}agent-state`` and ``{prefix}queue-metrics`` from the earliest offset, so a
   restarted daemon rebuilds the board from the compacted topics at once, then follows live.
2. A topic that does not exist yet is looked for again every ``poll_interval`` until it does.
3. Decoding is pure (:func:`decode_agent`, :func:`decode_metric`): unknown fields are ignored
   (newer producers), a value that is not a valid canonical event is skipped and counted
   (``streamd_errors_total{source="wallboard",stage="decode"}``), a tombstone removes the entry.
4. The feed is auxiliary: any failure (Kafka down, a bug) is logged once, retried with backoff,
   and never stops the daemon or the pipeline. The backoff resets once a session has assigned
   partitions, and the recovery is logged once.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import anyio
import anyio.lowlevel
import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from anyio.abc import TaskStatus

from streamd.config_core import KafkaConfig
from streamd.events import AGENT_STATE_TOPIC, QUEUE_METRICS_TOPIC, AgentState, QueueMetric, State
from streamd.publish.encoding import header_dict
from streamd.publish.kafka import client_kwargs
from streamd.retry import backoff
from streamd.telemetry import count_error
from streamd.wallboard.hub import StateHub

log = logging.getLogger("streamd.wallboard")


class DecodeError(ValueError):
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


def decode_agent(value: bytes) -> AgentState:
    """An ``agent-state`` record value back into an :class:`AgentState`.

    Raises:
        DecodeError: not JSON, or a required field is missing or mistyped.
    """
    obj = _object(value)
    try:
        state = State(str(obj.get("state")))
    except ValueError:
        state = State.UNKNOWN
    queues = obj.get("queue_ids") or []
    if not isinstance(queues, list):
        raise DecodeError("queue_ids is not a list")
    return AgentState(
        vendor=_str(obj, "vendor", True) or "",
        source=_str(obj, "source", True) or "",
        agent_id=_str(obj, "agent_id", True) or "",
        state=state,
        agent_name=_str(obj, "agent_name"),
        vendor_state=_str(obj, "vendor_state"),
        reason_code=_str(obj, "reason_code"),
        since=_time(obj, "since"),
        queue_ids=tuple(str(q) for q in queues),
    )


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


def record_time(headers: Any, timestamp_ms: int | None) -> datetime | None:
    """When the record's event happened: ``ce_time``, else the Kafka timestamp."""
    ce_time = header_dict(headers).get("ce_time")
    if ce_time:
        try:
            return datetime.fromisoformat(ce_time)
        except ValueError:
            pass
    if timestamp_ms is not None and timestamp_ms > 0:
        return datetime.fromtimestamp(timestamp_ms / 1000, UTC)
    return None


def apply_record(
    hub: StateHub,
    kind: str,
    key: bytes | None,
    value: bytes | None,
    headers: Any = None,
    timestamp_ms: int | None = None,
) -> bool:
    """Apply one record of the ``agent-state`` (kind ``agent``) or ``queue-metrics`` topic.

    Returns True when the hub changed. Undecodable records are counted and skipped.
    """
    text_key = key.decode("utf-8", "replace") if key else None
    try:
        if value is None:  # a tombstone on the compacted topic
            if text_key is None:
                raise DecodeError("tombstone without a key")
            return hub.remove("agent" if kind == "agent" else "metric", text_key)
        if kind == "agent":
            agent = decode_agent(value)
            return hub.update_agent(agent, observed=record_time(headers, timestamp_ms), key=text_key)
        return hub.update_metric(decode_metric(value), key=text_key)
    except DecodeError as exc:
        count_error("wallboard", "decode", "invalid_event")
        log.debug("skipping an undecodable %s record: %s", kind, exc)
        return False


async def run_feed(
    hub: StateHub,
    kafka: KafkaConfig,
    bootstrap: str,
    *,
    poll_interval: float = 1.0,
    delays: Callable[[], Iterator[float]] = lambda: backoff(cap=10.0),
    task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Feed ``hub`` from Kafka until cancelled; reports started at once, reconnects forever.

    The backoff restarts from its first delay once a session has assigned partitions (a healthy
    session), so a feed that ran for hours reconnects at once after its first failure.
    """
    task_status.started()
    waits = delays()
    failing = False

    def assigned() -> None:
        nonlocal waits, failing
        waits = delays()
        if failing:
            log.info("wallboard feed from Kafka recovered")
            failing = False

    while True:
        try:
            await _session(hub, kafka, bootstrap, poll_interval, assigned)
        except Exception as exc:  # auxiliary: never take the daemon down
            detail = f"{type(exc).__name__}: {exc}"
            if not failing:
                log.warning("wallboard feed from Kafka failed (%s); retrying", detail)
                failing = True
            else:
                log.debug("wallboard feed still failing (%s)", detail)
            count_error("wallboard", "consume", type(exc).__name__)
        await anyio.sleep(next(waits))


async def _session(
    hub: StateHub, kafka: KafkaConfig, bootstrap: str, poll_interval: float, on_assigned: Callable[[], None]
) -> None:
    kinds = {
        kafka.topic_prefix + AGENT_STATE_TOPIC: "agent",
        kafka.topic_prefix + QUEUE_METRICS_TOPIC: "metric",
    }
    consumer = AIOKafkaConsumer(
        **client_kwargs(kafka, bootstrap),
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=200,
    )
    try:
        await consumer.start()
        assigned: set[TopicPartition] = set()
        next_check = 0.0
        logged = False
        while True:
            if len({tp.topic for tp in assigned}) < len(kinds) and anyio.current_time() >= next_check:
                next_check = anyio.current_time() + poll_interval
                assigned = await _assign(consumer, kinds, assigned)
                if assigned and not logged:
                    log.info("wallboard feed reading %s", ", ".join(sorted({tp.topic for tp in assigned})))
                    logged = True
                    on_assigned()  # a healthy session: the next reconnect starts the backoff afresh
            if not assigned:
                await anyio.sleep(poll_interval)
                continue
            batch = await consumer.getmany(timeout_ms=int(min(poll_interval, 1.0) * 1000), max_records=5000)
            for tp, messages in batch.items():
                kind = kinds[tp.topic]
                for m in messages:
                    apply_record(hub, kind, m.key, m.value, m.headers, m.timestamp)
    finally:
        with anyio.CancelScope(shield=True):
            # let aiokafka's no-group task start first, or stop() raises CancelledError
            await anyio.lowlevel.checkpoint()
            await consumer.stop()


async def _assign(
    consumer: AIOKafkaConsumer, kinds: dict[str, str], assigned: set[TopicPartition]
) -> set[TopicPartition]:
    """Assign every partition of the topics that exist, keeping positions already reached."""
    # What consumer.topics() does, keeping the partitions (aiokafka has no public call for it).
    cluster = await consumer._client.fetch_all_metadata()
    wanted = set(assigned)
    for topic in kinds:
        for p in cluster.partitions_for_topic(topic) or ():
            wanted.add(TopicPartition(topic, p))
    if wanted == assigned:
        return assigned
    positions = {tp: await consumer.position(tp) for tp in assigned}
    consumer.assign(sorted(wanted))
    for tp, offset in positions.items():
        consumer.seek(tp, offset)
    return wanted
