"""Typed Calabrio ONE responses and the events published from them (spec §3, §5, §6).

Rules:

1. Models keep every vendor field (``extra="allow"``): a field Calabrio adds is passed on.
2. The seed's OCR writes ``Id`` as ``ld`` and leaves some keys in truncated examples; models
   accept the documented spelling plus the plausible aliases (``id``/``agentId``,
   ``acdId``/``acdAgentId``), and numbers or strings where the seed shows both.
3. ``details`` of an adherence row is printed as an object but described as a list: both are
   accepted and published as a list.
4. :data:`EVENT_MODELS` maps each published ``ce_type`` to the model of its Kafka value; it is
   what ``streamd schema --events`` documents.
"""

from __future__ import annotations

from typing import Any

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator

ACTIVITY_TYPE = "calabrio.realtime.AgentActivity"
ADHERENCE_TYPE = "calabrio.adherence.AgentAdherence"
ACTIVITY_TOPIC = "calabrio.agent-state"
ADHERENCE_TOPIC = "calabrio.adherence"


class _Vendor(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True, populate_by_name=True)


def _ident(value: Any) -> Any:
    """Ids are numbers in most examples and strings in some: publish them as strings."""
    if isinstance(value, bool):
        raise ValueError("an id cannot be a boolean")
    return str(value) if isinstance(value, int | str) else value


class AuthorizeResponse(_Vendor):
    """``POST /api/rest/authorize`` (002 L1019-1052)."""

    session_id: str = Field(alias="sessionId")
    session_timeout: str | int | None = Field(None, alias="sessionTimeout")
    permissions: list[str] = Field(default_factory=list)


class RealTimeActivity(_Vendor):
    """One state an agent entered (002 L4614-4628)."""

    agent_state: str = Field(alias="agentState")
    reason_code: str | None = Field(None, alias="reasonCode")
    timestamp: int = Field(description="When the agent entered the state, epoch ms.")

    _reason = field_validator("reason_code", mode="before")(_ident)


class AgentActivities(_Vendor):
    """One agent's row of the real-time activity detail response."""

    agent_id: str = Field(validation_alias=AliasChoices("agentId", "agentld"), serialization_alias="agentId")
    employee_id: str | None = Field(
        None, validation_alias=AliasChoices("employeeId", "employeeld"), serialization_alias="employeeId"
    )
    real_time_activities: list[dict[str, Any]] = Field(
        default_factory=list,
        alias="realTimeActivities",
        description="Parsed one by one (a bad one is dead-lettered).",
    )

    _ids = field_validator("agent_id", "employee_id", mode="before")(_ident)


class AgentRef(_Vendor):
    """One agent of ``GET /api/rest/scheduling/agent`` (002 L688-739), the reference data."""

    agent_id: str = Field(
        validation_alias=AliasChoices("agentId", "id", "AgentID"), serialization_alias="agentId"
    )
    acd_id: str | None = Field(
        None,
        validation_alias=AliasChoices("acdId", "acdAgentId", "acdID", "ACD ID"),
        serialization_alias="acdId",
    )
    first_name: str | None = Field(None, alias="firstName")
    last_name: str | None = Field(None, alias="lastName")
    employee_number: str | None = Field(None, alias="employeeNumber")
    active: bool | None = None
    services: list[Any] = Field(default_factory=list)

    _ids = field_validator("agent_id", "acd_id", "employee_number", mode="before")(_ident)

    @property
    def display_name(self) -> str | None:
        """``First Last``, or None when the role hides both."""
        name = " ".join(p for p in (self.first_name, self.last_name) if p)
        return name or None


class AgentActivityEvent(_Vendor):
    """Kafka value of ``calabrio.realtime.AgentActivity`` on ``{prefix}calabrio.agent-state``.

    The vendor activity's own fields, the agent's ids from its row, and the reference data.
    """

    agent_id: str = Field(alias="agentId")
    employee_id: str | None = Field(None, alias="employeeId")
    agent_state: str = Field(alias="agentState")
    reason_code: str | None = Field(None, alias="reasonCode")
    timestamp: int = Field(description="When the agent entered the state, epoch ms.")
    acd_id: str | None = Field(None, alias="acdId", description="From the agent reference data.")
    agent_name: str | None = Field(None, alias="agentName", description="From the agent reference data.")


class AgentAdherence(_Vendor):
    """One row of ``GET /api/rest/scheduling/adherence/agent`` (002 L599-656), also its Kafka value
    (``calabrio.adherence.AgentAdherence`` on ``{prefix}calabrio.adherence``) with ``date`` added."""

    agent_id: str = Field(validation_alias=AliasChoices("agentId", "agentld"), serialization_alias="agentId")
    acd_agent_id: str | None = Field(None, alias="acdAgentId")
    date: str | None = Field(
        None, description="The tenant-local date the figures are for (added by streamd)."
    )
    scheduled_seconds: float | None = Field(None, alias="scheduledSeconds")
    scheduled_in_service_seconds: float | None = Field(None, alias="scheduledInServiceSeconds")
    actual_in_service_seconds: float | None = Field(None, alias="actualInServiceSeconds")
    not_in_adherence_seconds: float | None = Field(None, alias="notInAdherenceSeconds")
    schedule_adherence: float | None = Field(None, alias="scheduleAdherence")
    schedule_conformity: float | None = Field(None, alias="scheduleConformity")
    details: list[dict[str, Any]] = Field(default_factory=list)

    _ids = field_validator("agent_id", "acd_agent_id", mode="before")(_ident)

    @field_validator("details", mode="before")
    @classmethod
    def _details_list(cls, value: Any) -> Any:
        if value is None:
            return []
        return [value] if isinstance(value, dict) else value


EVENT_MODELS: dict[str, type[BaseModel]] = {
    ACTIVITY_TYPE: AgentActivityEvent,
    ADHERENCE_TYPE: AgentAdherence,
}
