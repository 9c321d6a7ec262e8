"""Typed Calabrio ONE responses and the events published from them (spec §3, §5, §6).

Rules:

1. The input models (:class:`AgentActivities`, :class:`RealTimeActivity`, :class:`AgentAdherence`
   with :class:`AdherenceDetail` and :class:`AdherenceActual`, :class:`AgentRef`) are the vendor's
   document. :class:`streamd.tolerant.Reader` reads responses against them: what deviates is
   listed, never fatal (see :mod:`.normalize`). They keep every vendor field (``extra="allow"``).
2. The seed's OCR writes ``Id`` as ``ld`` and leaves some keys in truncated examples; models
   accept the documented spelling plus the plausible aliases (``id``/``agentId``,
   ``acdId``/``acdAgentId``), and numbers or strings where the seed shows both. These variants
   are not deviations; ids are published as strings under their documented name.
3. ``details`` of an adherence row is printed as an object but described as a list: both are
   accepted (not a deviation) and published as a list.
4. The event models (:class:`AgentActivityEvent`, :class:`AgentAdherenceEvent`) describe the
   documented shape of the Kafka values; any field the vendor added is kept
   (``additionalProperties``). A record with a ``streamd_deviations`` header differs from it at
   the listed paths (``streamd schema --events`` adds that case to every vendor type).
5. :data:`EVENT_MODELS` maps each published ``ce_type`` to the model of its Kafka value; it is
   what ``streamd schema --events`` documents.
"""

from __future__ import annotations

from typing import Annotated, Any, Final

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator

from streamd.tolerant import KnownValues

ACTIVITY_TYPE = "calabrio.realtime.AgentActivity"
ADHERENCE_TYPE = "calabrio.adherence.AgentAdherence"
ACTIVITY_TOPIC = "calabrio.agent-state"
ADHERENCE_TOPIC = "calabrio.adherence"
REFERENCE_TOPIC = "calabrio.reference"

AGENT_STATES: Final = (
    "LOGGED_OUT",
    "READY_WAITING",
    "TALK",
    "WORK_AFTER_CONTACT",
    "HOLD",
    "NOT_READY_BUSY",
)
"""The documented ``agentState`` values (002 L4618-4626)."""

AgentStateName = Annotated[str, KnownValues(AGENT_STATES, "Calabrio agentState")]
"""An open enumeration: any text is kept; a value outside :data:`AGENT_STATES` is a deviation."""


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

    agent_state: AgentStateName = Field(alias="agentState")
    reason_code: str | None = Field(None, alias="reasonCode")
    timestamp: int = Field(description="When the agent entered the state, epoch ms.")

    _reason = field_validator("reason_code", mode="before")(_ident)


class AgentActivities(_Vendor):
    """One agent's row of the real-time activity detail response.

    Its ``realTimeActivities`` are read one by one as :class:`RealTimeActivity`, so that each
    activity's deviations are its own.
    """

    agent_id: str = Field(validation_alias=AliasChoices("agentId", "agentld"), serialization_alias="agentId")
    employee_id: str | None = Field(
        None, validation_alias=AliasChoices("employeeId", "employeeld"), serialization_alias="employeeId"
    )
    real_time_activities: list[Any] = Field(
        default_factory=list,
        alias="realTimeActivities",
        description="Each one a RealTimeActivity (read one by one).",
    )

    _ids = field_validator("agent_id", "employee_id", mode="before")(_ident)


class TeamOf(_Vendor):
    """An agent's ``mainTeam`` (002 L688-739)."""

    team_id: str | None = Field(None, alias="teamId")
    name: str | None = None

    _ids = field_validator("team_id", mode="before")(_ident)


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
    main_team: TeamOf | None = Field(None, alias="mainTeam")
    teams: list[Any] = Field(default_factory=list)

    _ids = field_validator("agent_id", "acd_id", "employee_number", mode="before")(_ident)

    @property
    def display_name(self) -> str | None:
        """``First Last``, or None when the role hides both."""
        name = " ".join(p for p in (self.first_name, self.last_name) if p)
        return name or None


class TeamRef(_Vendor):
    """One team of the Team (with Scope) API (002 L4496-4530; the seed prints ``name`` and
    ``GroupId`` only: ``id``/``teamId`` and ``groupId`` are accepted too)."""

    team_id: str = Field(validation_alias=AliasChoices("id", "teamId", "ID"), serialization_alias="id")
    name: str | None = Field(None, validation_alias=AliasChoices("name", "Name"))
    group_id: str | None = Field(
        None,
        validation_alias=AliasChoices("groupId", "GroupId", "parentGroupId"),
        serialization_alias="groupId",
    )

    _ids = field_validator("team_id", "group_id", mode="before")(_ident)


class ServiceQueueRef(_Vendor):
    """One service queue of the GET Service API (002 L5100-5140)."""

    queue_id: str = Field(
        validation_alias=AliasChoices("id", "ID", "serviceQueueId"), serialization_alias="id"
    )
    number: str | None = Field(None, description="The queue's id in the ACD.")
    name: str | None = None
    type_desc: str | None = Field(None, alias="typeDesc")

    _ids = field_validator("queue_id", "number", mode="before")(_ident)


class AdherenceActual(_Vendor):
    """One actual state during a scheduled activity (002 L639-656)."""

    actual_agent_state: str | None = Field(None, alias="actualAgentState")
    actual_agent_state_start_time: str | int | None = Field(
        None, alias="actualAgentStateStartTime", description='"UTC format": ISO-8601 or epoch ms.'
    )
    actual_reason_code: int | None = Field(None, alias="actualReasonCode")
    in_adherence_seconds: float | None = Field(None, alias="inAdherenceSeconds")
    out_of_adherence_seconds: float | None = Field(None, alias="outOfAdherenceSeconds")


class AdherenceDetail(_Vendor):
    """One scheduled activity of an adherence row (002 L628-656; ``Actity`` sic)."""

    scheduled_activity_type: str | None = Field(None, alias="scheduledActivityType")
    scheduled_actity_start_time: str | int | None = Field(
        None, alias="scheduledActityStartTime", description='"UTC format": ISO-8601 or epoch ms.'
    )
    in_adherence_seconds: float | None = Field(None, alias="inAdherenceSeconds")
    out_of_adherence_seconds: float | None = Field(None, alias="outOfAdherenceSeconds")
    actuals: list[AdherenceActual] = Field(default_factory=list)


class AgentAdherence(_Vendor):
    """One row of ``GET /api/rest/scheduling/adherence/agent`` (002 L599-656)."""

    agent_id: str = Field(validation_alias=AliasChoices("agentId", "agentld"), serialization_alias="agentId")
    acd_agent_id: str | None = Field(None, alias="acdAgentId")
    scheduled_seconds: float | None = Field(None, alias="scheduledSeconds")
    scheduled_in_service_seconds: float | None = Field(None, alias="scheduledInServiceSeconds")
    actual_in_service_seconds: float | None = Field(None, alias="actualInServiceSeconds")
    not_in_adherence_seconds: float | None = Field(None, alias="notInAdherenceSeconds")
    schedule_adherence: float | None = Field(None, alias="scheduleAdherence")
    schedule_conformity: float | None = Field(None, alias="scheduleConformity")
    details: list[AdherenceDetail] = Field(default_factory=list)

    _ids = field_validator("agent_id", "acd_agent_id", mode="before")(_ident)

    @field_validator("details", mode="before")
    @classmethod
    def _details_list(cls, value: Any) -> Any:
        if value is None:
            return []
        return [value] if isinstance(value, dict) else value


class AgentActivityEvent(_Vendor):
    """Kafka value of ``calabrio.realtime.AgentActivity`` on ``{prefix}calabrio.agent-state``.

    The vendor activity's own fields, its agent row's fields (ids, and any the vendor added), and
    the reference data.
    """

    agent_id: str = Field(alias="agentId")
    employee_id: str | None = Field(None, alias="employeeId")
    agent_state: AgentStateName = Field(alias="agentState")
    reason_code: str | None = Field(None, alias="reasonCode")
    timestamp: int = Field(description="When the agent entered the state, epoch ms.")
    acd_id: str | None = Field(None, alias="acdId", description="From the agent reference data.")
    agent_name: str | None = Field(None, alias="agentName", description="From the agent reference data.")
    team_id: str | None = Field(None, alias="teamId", description="The agent's main team (reference data).")
    team_name: str | None = Field(
        None, alias="teamName", description="The agent's main team (reference data)."
    )
    queue_ids: list[str] = Field(
        default_factory=list, alias="queueIds", description="The agent's service queues (reference data)."
    )
    queue_names: list[str | None] = Field(
        default_factory=list,
        alias="queueNames",
        description="Their names, in the same order (reference data).",
    )


class AgentAdherenceEvent(AgentAdherence):
    """Kafka value of ``calabrio.adherence.AgentAdherence`` on ``{prefix}calabrio.adherence``: the
    adherence row (ids as text, ``details`` a list) with ``date`` added."""

    date: str = Field(description="The tenant-local date the figures are for (added by streamd).")
    final: bool | None = Field(
        None,
        description="True on the once-more publish of a day's figures after that day ended in the tenant's "
        "time zone (added by streamd).",
    )


class AgentAdherenceStateEvent(BaseModel):
    """Kafka value of ``calabrio.adherence.AgentAdherenceState`` on ``{prefix}calabrio.adherence``
    (real-time adherence, made by streamd from the schedule and the agent's newest activity)."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    agent_id: str = Field(alias="agentId")
    in_adherence: bool | None = Field(alias="inAdherence", description="None: no rule for the activity type.")
    status: str = Field(description="in, out or unknown.")
    since: int = Field(description="When the status began, epoch ms.")
    actual_agent_state: str | None = Field(None, alias="actualAgentState")
    scheduled_activity_type: str | None = Field(
        None, alias="scheduledActivityType", description="None: unscheduled."
    )
    scheduled_activity_label: str | None = Field(None, alias="scheduledActivityLabel")
    scheduled_activity_detail: str | None = Field(None, alias="scheduledActivityDetail")
    scheduled_start_time: int | None = Field(None, alias="scheduledStartTime")
    scheduled_end_time: int | None = Field(None, alias="scheduledEndTime")
    service_queue_id: str | None = Field(None, alias="serviceQueueId")


class AgentReferenceEvent(AgentRef):
    """Kafka value of ``calabrio.reference.Agent`` on ``{prefix}calabrio.reference``: the agent row
    (full detail) as read, ids as text."""


class TeamReferenceEvent(TeamRef):
    """Kafka value of ``calabrio.reference.Team`` on ``{prefix}calabrio.reference``."""


class ServiceQueueReferenceEvent(ServiceQueueRef):
    """Kafka value of ``calabrio.reference.ServiceQueue`` on ``{prefix}calabrio.reference``."""


EVENT_MODELS: dict[str, type[BaseModel]] = {
    ACTIVITY_TYPE: AgentActivityEvent,
    ADHERENCE_TYPE: AgentAdherenceEvent,
    "calabrio.adherence.AgentAdherenceState": AgentAdherenceStateEvent,
    "calabrio.reference.Agent": AgentReferenceEvent,
    "calabrio.reference.Team": TeamReferenceEvent,
    "calabrio.reference.ServiceQueue": ServiceQueueReferenceEvent,
}
