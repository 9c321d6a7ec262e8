"""Sink ``calabrio-rtdc``: canonical agent states of one source -> Calabrio real-time data capture.

This makes streamd the bridge from an ACD (e.g. an O2G PBX) to Calabrio adherence: it consumes
``{prefix}agent-state``, keeps the states of the source named ``from``, maps each to a real-time
data capture record and POSTs them in batches to ``/api/rest/scheduling/gis/realTimeAgentState``
(spec §4, 002 L4642-4704) with the Calabrio session cookie (:mod:`streamd.sources.calabrio.auth`).

Canonical state -> ``gisStateIdentifier`` (002 L4674-4682; configurable):

==================  ====  ==========================================================
State               code  note
==================  ====  ==========================================================
``logged_out``      1     Logout
``not_ready``       2     Not Ready (``reason_code`` sent as ``reasonCode``)
``available``       3     Ready
``busy``            4     Talking; ``vendor_state_codes`` refines it (``HOLD`` -> 10)
``after_call_work`` 6     Work Ready by default (``after_call_work_code: 5`` = Work Not Ready)
``unknown``         -     not sent; counted as ``errors{stage="processing",error_type="unmapped_state"}``
==================  ====  ==========================================================

Rules:

1. Three layers, each testable alone: **pure** mapping and decoding (:func:`to_record`,
   :func:`decode_agent_state`, :func:`select_states`, :func:`batches`); **delivery**
   (:class:`RtdcDelivery`: HTTP batches, rejection handling, dead letters) fed with
   ``AgentState`` objects; the **Kafka consumer** (:class:`CalabrioRtdcSink`), which only reads,
   filters, hands batches to the delivery and commits offsets.
2. The record body is a JSON array of ``{acdAgentId, gisStateIdentifier, timestamp, reasonCode}``
   (the seed's example is missing; ``body: object`` sends one record per request instead).
3. A batch answered 400/422 is split in halves until the rejected records are isolated; each
   rejected record goes to ``{prefix}deadletter`` (stage ``sink``) and the rest is delivered.
4. Offsets are committed only after a batch was delivered or dead-lettered: at least once.
   A transient failure (5xx, timeout, 429) ends the session; ``run_forever`` backs off and the
   consumer resumes from the last commit (Calabrio tolerates the repeats; records are idempotent).
5. Per-agent order is kept: one agent's states share a partition and are sent in offset order.
6. The consumer assigns itself every partition of the topic and commits offsets under its
   ``group_id`` without joining the group: no rebalance wait (seconds), and streamd runs one
   active replica per source set anyway (DESIGN §5). Partitions added later are picked up at
   the next session.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AsyncExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import TYPE_CHECKING, Any, Literal

import anyio
import httpx
import orjson
from anyio.abc import TaskStatus
from pydantic import ConfigDict, Field, SecretStr, model_validator

from streamd.config_types import Duration, SourceName, StrictModel
from streamd.errors import NormalizationError, TransientError, map_errors
from streamd.events import AGENT_STATE_TOPIC, AgentState, DeadLetter, Event, State
from streamd.publish.encoding import encode
from streamd.retry import backoff, run_forever
from streamd.sources.calabrio.auth import auth_for, logout
from streamd.sources.http import check_status, httpx_errors
from streamd.telemetry import Component, count_error

if TYPE_CHECKING:
    from streamd.sources.base import SourceDeps

log = logging.getLogger("streamd.sinks.calabrio_rtdc")

REJECTED = (400, 422)

DeadLetters = Callable[[Sequence[Event]], Awaitable[None]]
"""Where rejected records and undecodable values go (awaited until durable)."""


class CalabrioRtdcSinkConfig(StrictModel):
    """Push the canonical agent states of another source into Calabrio real-time data capture."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    kind: Literal["calabrio-rtdc"] = Field(description="Selects the Calabrio real-time data capture sink.")
    name: SourceName = Field("", description="Component name; default calabrio-rtdc-{from}.")
    from_: SourceName = Field(alias="from", description="The source whose canonical agent states are sent.")
    url: str = Field(
        description="Calabrio tenant root, e.g. https://calabriocloud.com.", pattern=r"^https?://"
    )
    username: str = Field(description="API user with the WFM App Management permission.")
    password: SecretStr
    tenant_id: str | None = None
    language: str = "en"
    locale: str = "en"
    login_field: Literal["username", "userId", "both"] = "both"
    session_idle: Duration = 50 * 60.0
    batch_size: int = Field(100, ge=1, le=1000, description="Most records per request.")
    flush_interval: Duration = Field(1.0, gt=0, description="Longest wait for more records before sending.")
    timeout: Duration = Field(10.0, gt=0, description="Per-request timeout.")
    body: Literal["array", "object"] = Field(
        "array", description="array = one request per batch (JSON array); object = one request per record."
    )
    agent_map: dict[str, str] = Field(
        default_factory=dict,
        description="Canonical agent_id -> Calabrio acdAgentId; unmapped agents are sent with their own id.",
    )
    after_call_work_code: Literal[5, 6] = Field(6, description="5 = Work Not Ready, 6 = Work Ready.")
    vendor_state_codes: dict[str, int] = Field(
        default_factory=lambda: {"HOLD": 10},
        description="vendor_state (case-insensitive) -> gisStateIdentifier, checked before the state table.",
    )
    group_id: str | None = Field(None, description="Kafka consumer group; default streamd-{name}.")
    path: str = "/api/rest/scheduling/gis/realTimeAgentState"
    capture_url: str | None = Field(
        None,
        pattern=r"^https?://",
        description="Root of the server that takes the records when it is not `url`: the seed logs in at the "
        "Application server and submits 'to the Data server' (002 L4648-4652).",
    )
    authorize_path: str = "/api/rest/authorize"

    @model_validator(mode="before")
    @classmethod
    def _default_name(cls, data: Any) -> Any:
        if isinstance(data, dict) and not data.get("name"):
            origin = data.get("from", data.get("from_"))
            if isinstance(origin, str):
                return {**data, "name": f"calabrio-rtdc-{origin}"}
        return data

    def build(self, deps: SourceDeps) -> CalabrioRtdcSink:
        """The runtime sink, reading ``{prefix}agent-state`` from the configured Kafka."""
        from streamd.publish.kafka import client_kwargs

        bootstrap = deps.kafka.bootstrap_servers
        return CalabrioRtdcSink(
            self,
            bootstrap=bootstrap,
            topic=deps.topic_prefix + AGENT_STATE_TOPIC,
            kafka_kwargs=client_kwargs(deps.kafka, bootstrap),
            topic_prefix=deps.topic_prefix,
            component=deps.component,
        )


# --- pure: mapping, decoding, batching --------------------------------------------------------

GIS_CODES: Mapping[State, int] = {
    State.LOGGED_OUT: 1,
    State.NOT_READY: 2,
    State.AVAILABLE: 3,
    State.BUSY: 4,
    State.AFTER_CALL_WORK: 6,
}


@dataclass(frozen=True, slots=True)
class RtdcMapping:
    """How canonical states become records (built from the config)."""

    agent_map: Mapping[str, str] = field(default_factory=dict)
    after_call_work_code: int = 6
    vendor_state_codes: Mapping[str, int] = field(default_factory=lambda: {"HOLD": 10})

    @classmethod
    def of(cls, cfg: CalabrioRtdcSinkConfig) -> RtdcMapping:
        """The mapping a config describes."""
        codes = {k.upper(): v for k, v in cfg.vendor_state_codes.items()}
        return cls(cfg.agent_map, cfg.after_call_work_code, codes)


@dataclass(frozen=True, slots=True)
class RtdcRecord:
    """One real-time data capture record (002 L4668-4684)."""

    acd_agent_id: str
    gis_state: int
    timestamp: int
    reason_code: str | None = None

    def wire(self) -> dict[str, Any]:
        """The JSON object Calabrio receives."""
        return {
            "acdAgentId": self.acd_agent_id,
            "gisStateIdentifier": self.gis_state,
            "timestamp": self.timestamp,
            "reasonCode": self.reason_code,
        }


def gis_code(state: AgentState, mapping: RtdcMapping) -> int | None:
    """The ``gisStateIdentifier`` of a canonical state, or None when it has none (module table)."""
    if state.vendor_state and state.state is not State.LOGGED_OUT:
        code = mapping.vendor_state_codes.get(state.vendor_state.upper())
        if code is not None:
            return code
    if state.state is State.AFTER_CALL_WORK:
        return mapping.after_call_work_code
    return GIS_CODES.get(state.state)


def to_record(state: AgentState, mapping: RtdcMapping, *, fallback_ms: int) -> RtdcRecord | None:
    """Map one canonical state; None when its state cannot be expressed (``unknown``).

    Args:
        state: the canonical agent state.
        mapping: agent ids and state codes.
        fallback_ms: the timestamp to use when the state has no ``since`` (the event time).
    """
    code = gis_code(state, mapping)
    if code is None:
        return None
    when = int(state.since.timestamp() * 1000) if state.since else fallback_ms
    reason = state.reason_code if code in (1, 2) and state.reason_code not in (None, "") else None
    return RtdcRecord(mapping.agent_map.get(state.agent_id, state.agent_id), code, when, reason)


def decode_agent_state(value: bytes | None) -> AgentState:
    """Decode the Kafka value of a ``streamd.agent.State`` event.

    Raises:
        NormalizationError: the value is not a canonical agent state.
    """
    try:
        data = orjson.loads(value or b"")
        since = data.get("since")
        return AgentState(
            vendor=str(data["vendor"]),
            source=str(data["source"]),
            agent_id=str(data["agent_id"]),
            state=State(data["state"]),
            agent_name=data.get("agent_name"),
            vendor_state=data.get("vendor_state"),
            reason_code=None if data.get("reason_code") is None else str(data["reason_code"]),
            since=datetime.fromisoformat(since) if since else None,
            queue_ids=tuple(str(q) for q in data.get("queue_ids") or ()),
        )
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as exc:
        raise NormalizationError(f"not a canonical agent state: {exc}", "invalid_payload") from exc


@dataclass(frozen=True, slots=True)
class InRecord:
    """What the sink needs of one consumed Kafka record."""

    value: bytes | None
    headers: Mapping[str, bytes]
    timestamp_ms: int


def select_states(
    records: Iterable[InRecord], source: str, sink: str
) -> tuple[list[tuple[AgentState, int]], list[Event]]:
    """Keep the agent states of ``source`` (with their fallback time) and dead-letter bad values.

    The ``ce_source`` header filters before decoding; records without it are decoded and
    filtered on their ``source`` field.
    """
    wanted = f"streamd/{source}".encode()
    states: list[tuple[AgentState, int]] = []
    dead: list[Event] = []
    for rec in records:
        ce_source = rec.headers.get("ce_source")
        if ce_source is not None and ce_source != wanted:
            continue
        try:
            state = decode_agent_state(rec.value)
        except NormalizationError as exc:
            raw = rec.value or b""
            dl = DeadLetter.of(source=sink, stage="sink", error_type=exc.error_type, error=str(exc), raw=raw)
            dead.append(dl.to_event())
            continue
        if state.source == source:
            states.append((state, _header_ms(rec.headers.get("ce_time")) or rec.timestamp_ms))
    return states, dead


def batches(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    """Consecutive slices of at most ``size`` items, in order."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _header_ms(value: bytes | None) -> int | None:
    if not value:
        return None
    try:
        return int(datetime.fromisoformat(value.decode()).timestamp() * 1000)
    except ValueError:
        return None


# --- delivery: HTTP batches, rejection, dead letters ------------------------------------------


@dataclass(slots=True)
class DeliveryReport:
    """What one :meth:`RtdcDelivery.deliver` call did."""

    sent: int = 0
    rejected: int = 0
    skipped: int = 0


class RtdcDelivery:
    """Sends canonical states to the capture endpoint (rule 1's middle layer).

    Args:
        cfg: the sink config.
        client: an httpx client whose base URL is the tenant and whose auth is :class:`CalabrioAuth`.
        deadletter: where rejected records go (durable emit).
    """

    def __init__(
        self,
        cfg: CalabrioRtdcSinkConfig,
        client: httpx.AsyncClient,
        deadletter: DeadLetters,
    ) -> None:
        self.cfg = cfg
        self.client = client
        self.deadletter = deadletter
        self.mapping = RtdcMapping.of(cfg)
        self.target = (cfg.capture_url.rstrip("/") + cfg.path) if cfg.capture_url else cfg.path

    async def deliver(self, states: Sequence[tuple[AgentState, int]]) -> DeliveryReport:
        """Map, batch and send; rejected records are dead-lettered, retryable failures raised.

        Args:
            states: canonical states with the fallback timestamp (ms) of each.

        Raises:
            TransientError, BackOff, AuthError: the batch could not be delivered; nothing was
            dead-lettered for it, so the caller must not commit it.
        """
        report = DeliveryReport()
        records: list[RtdcRecord] = []
        for state, fallback in states:
            record = to_record(state, self.mapping, fallback_ms=fallback)
            if record is None:
                report.skipped += 1
                count_error(self.cfg.name, "processing", "unmapped_state")
            else:
                records.append(record)
        size = self.cfg.batch_size if self.cfg.body == "array" else 1
        for chunk in batches(records, size):
            await self._send(chunk, report)
        return report

    async def _send(self, chunk: Sequence[RtdcRecord], report: DeliveryReport) -> None:
        payload: Any = [r.wire() for r in chunk] if self.cfg.body == "array" else chunk[0].wire()
        with httpx_errors():
            response = await self.client.post(self.target, json=payload)
        if response.status_code not in REJECTED:
            check_status(response, f"calabrio POST {self.cfg.path}")
            report.sent += len(chunk)
            return
        if len(chunk) > 1:  # isolate the rejected records (rule 3)
            half = len(chunk) // 2
            await self._send(chunk[:half], report)
            await self._send(chunk[half:], report)
            return
        report.rejected += 1
        count_error(self.cfg.name, "sink", "rejected")
        error = f"calabrio rejected the record: HTTP {response.status_code} {response.text[:200]}"
        raw = orjson.dumps(chunk[0].wire()).decode()
        await self.deadletter(
            [
                DeadLetter.of(
                    source=self.cfg.name, stage="sink", error_type="rejected", error=error, raw=raw
                ).to_event()
            ]
        )


# --- the Kafka consumer -----------------------------------------------------------------------


class CalabrioRtdcSink:
    """Consumes ``{prefix}agent-state`` and feeds :class:`RtdcDelivery` (rule 1's outer layer).

    Args:
        cfg: the sink config.
        bootstrap: Kafka bootstrap servers (resolved: not "embedded").
        topic: the full canonical agent-state topic name (prefix included).
        topic_prefix: prefix of the dead-letter topic.
        kafka_kwargs: extra aiokafka client settings (``streamd.publish.kafka.client_kwargs``).
        component: health of this sink.
        deadletter: where dead letters go; default: produced by the sink to ``{prefix}deadletter``.
        delays: ``run_forever`` backoff delays.
    """

    def __init__(
        self,
        cfg: CalabrioRtdcSinkConfig,
        *,
        bootstrap: str,
        topic: str,
        topic_prefix: str = "streamd.",
        kafka_kwargs: Mapping[str, Any] | None = None,
        component: Component | None = None,
        deadletter: DeadLetters | None = None,
        delays: Callable[[], Iterator[float]] = backoff,
    ) -> None:
        self.name = cfg.name
        self.cfg = cfg
        self.topic = topic
        self.topic_prefix = topic_prefix
        self.kafka_kwargs = {**(kafka_kwargs or {}), "bootstrap_servers": bootstrap}
        self.component = component or Component(cfg.name, "sink")
        self.deadletter = deadletter
        self.delays = delays
        self.auth = auth_for(cfg)

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Forward agent states until cancelled; ready once the consumer has started."""
        try:
            await run_forever(
                self.session, component=self.component, delays=self.delays, task_status=task_status
            )
        finally:
            with anyio.move_on_after(2, shield=True):
                await logout(self.auth)

    async def session(self, connected: Callable[[], None]) -> None:
        """One session: consumer (+ dead-letter producer) + HTTP client, until an error."""
        from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

        consumer = AIOKafkaConsumer(
            group_id=self.cfg.group_id or f"streamd-{self.name}",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            **self.kafka_kwargs,
        )
        producer = None if self.deadletter else AIOKafkaProducer(acks="all", **self.kafka_kwargs)
        deadletter = self.deadletter or partial(_produce, producer, self.topic_prefix)
        client = httpx.AsyncClient(base_url=self.cfg.url, auth=self.auth, timeout=self.cfg.timeout)
        async with client, AsyncExitStack() as stack:
            for kafka_client in (consumer, producer):
                if kafka_client is not None:
                    with _kafka_errors():
                        await kafka_client.start()
                    stack.push_async_callback(_stop, kafka_client)
            await self._assign(consumer)
            connected()
            await self._forward(consumer, RtdcDelivery(self.cfg, client, deadletter), deadletter)

    async def _assign(self, consumer: Any) -> None:
        """Take every partition of the topic (rule 6): no group join, offsets still in the group."""
        from aiokafka import TopicPartition

        with _kafka_errors():
            await consumer.topics()  # refreshes the metadata
            partitions = consumer.partitions_for_topic(self.topic)
        if not partitions:
            raise TransientError(f"{self.name}: topic {self.topic} does not exist yet")
        consumer.assign([TopicPartition(self.topic, p) for p in sorted(partitions)])

    async def _forward(self, consumer: Any, delivery: RtdcDelivery, deadletter: DeadLetters) -> None:
        while True:
            with _kafka_errors():
                fetched = await consumer.getmany(
                    timeout_ms=int(self.cfg.flush_interval * 1000), max_records=self.cfg.batch_size
                )
            records = [
                InRecord(r.value, dict(r.headers or ()), r.timestamp) for rs in fetched.values() for r in rs
            ]
            if not records:
                continue
            states, dead = select_states(records, self.cfg.from_, self.name)
            if dead:
                for event in dead:
                    count_error(self.name, "sink", event.data.error_type)
                await deadletter(dead)
            await delivery.deliver(states)
            with _kafka_errors():
                await consumer.commit()


@contextmanager
def _kafka_errors() -> Iterator[None]:
    from aiokafka.errors import KafkaError

    with map_errors({KafkaError: TransientError}):
        yield


async def _produce(producer: Any, prefix: str, events: Sequence[Event]) -> None:
    """Send dead letters and wait for their acknowledgement."""
    with _kafka_errors():
        for event in events:
            record = encode(event, prefix)
            future = await producer.send(record.topic, record.value, key=record.key, headers=record.headers)
            await future


async def _stop(kafka_client: Any) -> None:
    with anyio.move_on_after(2, shield=True):
        try:
            with _kafka_errors():
                await kafka_client.stop()
        except TransientError as exc:  # stopping a client that never connected
            log.debug("calabrio-rtdc: kafka client stop failed: %s", exc)
