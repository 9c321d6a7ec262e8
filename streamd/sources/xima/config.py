"""Configuration of a Xima / Avaya Call Reporting source (``kind: xima``).

Rules:

1. Field names follow the other sources (``url``, ``api_key``, ``mode``, ``interval``, ``metrics``,
   ``historic: [{key, every}]``); everything else is added, never renamed.
2. ``url`` is the server root (``https://cr.example`` or ``http://10.0.0.5:9080``); REST paths are
   appended (``/rest/api/v1/...``), so it must be ``http://`` or ``https://`` (a ``ws://`` address
   there is refused with a line saying where it belongs). The websocket URL derives from it
   (``http``→``ws``, ``https``→``wss``) unless ``websocket_url`` is given.
3. ``build`` imports the runtime lazily, so validating a config never imports websockets.
4. TLS is configured like every vendor client's (:class:`~streamd.sources.http.TlsSettings`:
   ``verify_tls``, ``ca_file``), for REST and the websocket alike.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, field_validator, model_validator

from streamd.config_types import Duration, HttpUrl, Secret, SourceName, StrictModel
from streamd.events import State
from streamd.sources.http import TlsSettings

if TYPE_CHECKING:
    from streamd.sources.base import Source, SourceDeps


class XimaHistoricReport(StrictModel):
    """One API-enabled historic report exported period by period."""

    key: str = Field(
        description="The report's historicDataKey (the 'Report UUID', e.g. LT39K5C5).", min_length=1
    )
    id: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$",
        description=(
            "Name of this export (its job, cursor, Kafka key and event ids); default: the key. "
            "Required to configure one report key several times (e.g. with different parameters)."
        ),
    )
    settle: int = Field(
        default=0,
        ge=0,
        le=96,
        description=(
            "Re-export each period once more this many periods after it (late-arriving rows), "
            "with its own deterministic event ids and settle: true; 0: never."
        ),
    )
    every: Duration = Field(
        default=900.0,
        description="Period length; one report run per period. Must divide 24h (periods align to midnight).",
    )
    lag: Duration = Field(
        default=60.0, description="Wait this long after a period ends before exporting it (late data)."
    )
    start: datetime | None = Field(
        default=None,
        description="First period to export when no cursor is stored yet; default: the last complete period.",
    )
    timezone: str = Field(
        default="UTC", description="IANA zone the periods align to and the timeframe is written in."
    )
    timeframe_parameter: str = Field(
        default="Report Timeframe", description="Name of the report's REPORT_TIMEFRAME parameter."
    )
    parameters: list[dict[str, Any]] = Field(
        default_factory=list,
        description="Further report parameters, verbatim from 'Show Request Details' (e.g. Rows (Agent)).",
    )
    timeout: Duration = Field(default=60.0, description="Timeout of one report run.")

    @field_validator("every")
    @classmethod
    def _divides_day(cls, v: float) -> float:
        if v <= 0 or v > 86400 or 86400 % v:
            raise ValueError("every must divide 24h (e.g. 15m, 1h, 1d)")
        return v

    @property
    def export_id(self) -> str:
        """The name of this export: ``id``, else the report key."""
        return self.id or self.key

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {v!r}") from exc
        return v


class XimaCallsWebhook(StrictModel):
    """Call-finished pushes: a WebService Integration profile (seed 000 L1030-1062) targets
    ``/webhooks/xima/{name}`` on streamd's HTTP port."""

    secret: Secret = Field(
        description="Shared secret the profile sends in the secret_header HTTP header (one of its HTTP Headers)."
    )
    secret_header: str = Field(
        default="X-Streamd-Secret", min_length=1, description="The header that carries the shared secret."
    )
    call_id_field: str = Field(
        default="callId",
        min_length=1,
        description="The URL parameter (or body field) holding the call id: the Kafka key of the event.",
    )
    deadline: Duration = Field(
        default=5.0, gt=0, description="A push is answered 503 if its event is not durable by then."
    )
    max_body: int = Field(
        default=65536, ge=1024, description="Largest request body accepted, in bytes (413 beyond)."
    )


CanonicalQueueMetric = Literal[
    "waiting",
    "longest_wait_seconds",
    "average_wait_seconds",
    "service_level_percent",
    "answered",
    "abandoned",
    "agents_available",
    "agents_busy",
    "agents_logged_in",
]


class XimaSourceConfig(TlsSettings):
    """A Xima / Avaya Call Reporting server: realtime metric values and historic report export."""

    kind: Literal["xima"]
    name: SourceName
    url: HttpUrl = Field(
        description="Server root, e.g. https://abc-medical.xima.cloud or http://10.0.0.5:9080."
    )
    api_key: Secret = Field(description="The Service User's authentication key (sent as Bearer).")
    mode: Literal["poll", "websocket"] = Field(
        default="poll", description="Realtime values by polling the REST API or by websocket subscription."
    )
    interval: Duration = Field(default=5.0, description="Realtime poll interval.")
    metrics: Literal["all"] | list[str] = Field(
        default="all",
        description="'all' = every API-enabled metric (GET /realtime/metrics), or metric ids; [] = none.",
    )
    metrics_refresh: Duration = Field(
        default=300.0, description="How often the metric list (names, categories, 'all') is re-read."
    )
    refresh_every: Duration = Field(
        default=300.0,
        description="Full snapshot of every current value this often (changes only in between).",
    )
    initializing_retry: Duration = Field(
        default=1.0, description="Re-poll this soon while any requested value is still initializing."
    )
    max_ids_per_request: int = Field(
        default=50, ge=1, description="Metric ids per values request (comma-separated 'id')."
    )
    websocket_fallback: bool = Field(
        default=True,
        description="In websocket mode, poll instead when the websocket endpoint is unavailable.",
    )
    websocket_url: str | None = Field(
        default=None, description="Websocket root when it differs from url (default: url with ws/wss scheme)."
    )
    ping_interval: Duration = Field(default=20.0, description="Websocket ping interval (liveness).")
    ping_timeout: Duration = Field(default=20.0, description="Close the websocket when a pong is this late.")
    agent_mapping: bool = Field(
        default=True, description="Enrich agent category values from GET /agents/mapping."
    )
    mapping_refresh: Duration = Field(default=900.0, description="How often the agent mapping is re-read.")
    canonical: bool = Field(
        default=True, description="Also emit canonical QueueMetric (GROUP metrics) and AgentState events."
    )
    agent_state_metrics: list[str] = Field(
        default_factory=list,
        description="AGENT-category STRING metric ids whose value is the agent's state (→ AgentState).",
    )
    agent_group_metrics: dict[str, str] = Field(
        default_factory=dict,
        description=(
            "Agent-group metric id (an AGENT metric listing the agents of one group) -> that group's "
            "queue id: its agents get it in their canonical AgentState queue_ids."
        ),
    )
    agent_state_map: dict[str, State] = Field(
        default_factory=dict, description="Extra vendor state string → canonical state entries."
    )
    system_queue: str | None = Field(
        default="all",
        description=(
            "Queue id for the canonical QueueMetric of metrics without a GROUP category (NONE, "
            "CALL_DIRECTION, ACCOUNT_CODE: whole-system figures); null: no canonical event for them."
        ),
        min_length=1,
    )
    queue_metric_map: dict[str, CanonicalQueueMetric] = Field(
        default_factory=dict,
        description=(
            "Metric id → canonical queue metric name (waiting, longest_wait_seconds, ...); overrides "
            "the mapping by display name."
        ),
    )
    timeout: Duration = Field(
        default=4.0, description="Timeout of one realtime poll cycle (keep it below interval)."
    )
    historic: list[XimaHistoricReport] = Field(
        default_factory=list, description="Historic reports to export on a schedule."
    )
    calls: XimaCallsWebhook | None = Field(
        default=None,
        description="Receive call-finished pushes at /webhooks/xima/{name} (published on xima.calls).",
    )

    @field_validator("url", mode="before")
    @classmethod
    def _http_root(cls, v: object) -> object:
        # before HttpUrl's own check, so a websocket address gets the line saying where it belongs
        if isinstance(v, str) and v.startswith(("ws://", "wss://")):
            raise ValueError(
                "url is the REST root and must start with http:// or https://; the websocket address "
                "derives from it (http -> ws, https -> wss), or put a ws:// / wss:// address in websocket_url"
            )
        return v.rstrip("/") if isinstance(v, str) else v

    @field_validator("websocket_url")
    @classmethod
    def _ws_root(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith(("http://", "https://", "ws://", "wss://")):
            raise ValueError("must start with ws://, wss://, http:// or https://")
        return v.rstrip("/") if v is not None else v

    @model_validator(mode="after")
    def _unique_reports(self) -> XimaSourceConfig:
        seen: set[str] = set()
        for report in self.historic:
            if report.export_id in seen:
                raise ValueError(
                    f"historic report {report.export_id!r} is configured twice: give each entry "
                    "of the same key its own id (e.g. id: sales-daily)"
                )
            seen.add(report.export_id)
        if self.metrics == [] and not self.historic and self.calls is None:
            raise ValueError(
                "nothing to do: metrics is [] and no historic report or calls webhook is configured"
            )
        return self

    def ws_root(self) -> str:
        """The websocket root URL (``ws://host:port`` or ``wss://host``)."""
        root = self.websocket_url or self.url
        if root.startswith("https://"):
            return "wss://" + root.removeprefix("https://")
        if root.startswith("http://"):
            return "ws://" + root.removeprefix("http://")
        return root

    def build(self, deps: SourceDeps) -> Source:
        """Construct the runtime :class:`~streamd.sources.xima.source.XimaSource`."""
        from streamd.sources.xima.source import XimaSource

        return XimaSource(self, deps)
