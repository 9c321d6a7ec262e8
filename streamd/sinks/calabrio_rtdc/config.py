"""The ``calabrio-rtdc`` sink's config section (see :mod:`streamd.sinks.calabrio_rtdc`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import ConfigDict, Field, SecretStr, model_validator

from streamd.config_types import Duration, HttpUrl, SourceName
from streamd.sources.http import TlsSettings

if TYPE_CHECKING:
    from streamd.sinks.base import SinkDeps
    from streamd.sinks.calabrio_rtdc.sink import CalabrioRtdcSink


class CalabrioRtdcSinkConfig(TlsSettings):
    """Push the canonical agent states of another source into Calabrio real-time data capture
    (TLS: ``verify_tls``, ``ca_file`` as for every vendor client)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    kind: Literal["calabrio-rtdc"] = Field(description="Selects the Calabrio real-time data capture sink.")
    name: SourceName = Field("", description="Component name; default calabrio-rtdc-{from}.")
    from_: SourceName = Field(alias="from", description="The source whose canonical agent states are sent.")
    url: HttpUrl = Field(description="Calabrio tenant root, e.g. https://calabriocloud.com.")
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
    content_type: Literal["json", "multipart"] = Field(
        "json",
        description="How the records are sent: json = an application/json body; multipart = "
        "multipart/form-data, the content type the guide declares (002 L4659), with the records' JSON text "
        "in the form field `form_field`.",
    )
    form_field: str = Field(
        "data",
        min_length=1,
        description="With content_type multipart: the form field that carries the records' JSON text (the "
        "guide names none; use what the tenant expects).",
    )
    reject_limit: int = Field(
        10,
        ge=1,
        description="Fail the sink (state failed, with Calabrio's answer) once this many records in a row "
        "were rejected, counted over batches of which Calabrio accepted nothing: a systematic rejection "
        "(a wrong body or path, ids Calabrio does not know) is a setting to fix, not bad records to "
        "dead-letter. Fewer rejected records are dead-lettered and the rest delivered.",
    )
    agent_map: dict[str, str] = Field(
        default_factory=dict,
        description="Canonical agent_id -> Calabrio acdAgentId; overrides the automatic mapping (map_by_acd_id).",
    )
    map_by_acd_id: bool = Field(
        True,
        description="Send an agent when a Calabrio agent's acdId (Agent API, full detail) equals its agent_id; "
        "an agent neither found there nor in agent_map goes to the dead-letter topic with the reason. "
        "False: agents not in agent_map are sent with their own id and Calabrio decides.",
    )
    reference_refresh: Duration = Field(
        3600.0, gt=0, description="How often the Calabrio agent list (their acdId) is re-read."
    )
    agents_path: str = "/api/rest/scheduling/agent"
    after_call_work_code: Literal[5, 6] = Field(6, description="5 = Work Not Ready, 6 = Work Ready.")
    vendor_state_codes: dict[str, int] = Field(
        default_factory=lambda: {"HOLD": 10},
        description="vendor_state (case-insensitive) -> gisStateIdentifier, checked before the state table.",
    )
    group_id: str | None = Field(None, description="Kafka consumer group; default streamd-{name}.")
    path: str = "/api/rest/scheduling/gis/realTimeAgentState"
    capture_url: HttpUrl | None = Field(
        None,
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

    def build(self, deps: SinkDeps) -> CalabrioRtdcSink:
        """The runtime sink, reading ``{prefix}agent-state`` from the configured Kafka."""
        from streamd.sinks.calabrio_rtdc.sink import CalabrioRtdcSink

        return CalabrioRtdcSink(self, deps.kafka, jobs=deps.jobs)
