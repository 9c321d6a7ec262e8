"""Configuration of a Calabrio ONE source (``kind: calabrio``).

Rules:

1. Field names follow the other sources (``url``, ``username``, ``password``, ``interval``, ``adherence``);
   everything else is added, never renamed.
2. Every vendor path is a config value: the seed prints several URIs ambiguously (spec §1.1).
3. ``build`` imports the runtime lazily so validating a config never builds httpx clients.
4. TLS is configured like every vendor client's (:class:`~streamd.sources.http.TlsSettings`:
   ``verify_tls``, ``ca_file``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, field_validator, model_validator

from streamd.config_types import Duration, HttpUrl, Secret, SourceName
from streamd.events import State
from streamd.sources.http import TlsSettings

if TYPE_CHECKING:
    from streamd.sources.base import Source, SourceDeps

MAX_WINDOW_SECONDS = 31 * 86400.0  # the activity API serves at most 31 days per request (002 L4571)


class CalabrioSourceConfig(TlsSettings):
    """Poll Calabrio ONE real-time agent states (and optionally adherence) with a session cookie."""

    kind: Literal["calabrio"] = Field(description="Selects the Calabrio ONE source.")
    name: SourceName
    url: HttpUrl = Field(
        description="Tenant root, e.g. https://calabriocloud.com (paths below are appended to it).",
    )
    username: str = Field(description="API user (an e-mail address; spec §2.4).")
    password: Secret = Field(description="API user's password.")
    tenant_id: str | None = Field(None, description="Tenant id, when the user exists in several tenants.")
    language: str = Field("en", description="`language` sent to POST /api/rest/authorize.")
    locale: str = Field("en", description="`locale` sent to POST /api/rest/authorize.")
    login_field: Literal["username", "userId", "both"] = Field(
        "both",
        description="Key of the user name in the authorize body: the seed's table says userId, its JSON "
        "example username (002 L512/L522); 'both' sends both.",
    )
    session_idle: Duration = Field(
        50 * 60.0,
        description="Re-authorize proactively after this long without a call (the authorize response "
        "says sessionTimeout '60' minutes, the prose two hours).",
    )
    interval: Duration = Field(10.0, gt=0, description="Real-time activity poll interval.")
    timeout: Duration = Field(5.0, gt=0, description="Per-cycle request timeout (keep below interval).")
    agent_ids: list[int] = Field(
        default_factory=list, description="WFM agent ids to poll; empty = every agent in the user's view."
    )
    overlap: Duration = Field(
        120.0,
        description="Each window re-reads this much before the last window's end, to catch late rows; "
        "duplicates are removed with the keys kept in the cursor.",
    )
    initial_lookback: Duration = Field(
        900.0, description="Without a saved cursor, the first window starts this long before now."
    )
    max_window: Duration = Field(
        86400.0,
        gt=0,
        le=MAX_WINDOW_SECONDS,
        description="Longest window per request (the API allows 31 days); backlogs are read in chunks.",
    )
    adherence: bool = Field(False, description="Also poll adherence/conformance to calabrio.adherence.")
    adherence_interval: Duration = Field(300.0, gt=0, description="Adherence poll interval.")
    adherence_refresh: Duration = Field(
        300.0,
        gt=0,
        description="Publish every adherence row again (as a snapshot) this often; else changes only.",
    )
    adherence_page_size: int = Field(200, ge=1, le=200, description="pageSize (the API caps it at 200).")
    adherence_max_pages: int = Field(
        50,
        ge=1,
        le=500,
        description="Most adherence pages read per cycle (the API gives no total; a short page is the "
        "last). Rows beyond it are not read, with a warning: raise it for very large tenants.",
    )
    tenant_timezone: str = Field(
        "UTC", description="IANA zone of the tenant: adherence is computed midnight-to-midnight in it."
    )
    reference_refresh: Duration = Field(
        3600.0, gt=0, description="How often the reference data (agents, teams, service queues) is re-read."
    )
    reference_publish: bool = Field(
        True,
        description="Publish the reference data on {prefix}calabrio.reference (compacted, key "
        "{source}:{kind}:{id}, kind agent, team or service_queue).",
    )
    realtime_adherence: bool = Field(
        False,
        description="Publish real-time adherence: each agent's actual state against today's schedule "
        "(Schedule Details, Plan Schedules permission) as calabrio.adherence.AgentAdherenceState and the "
        "canonical streamd.agent.Adherence on {prefix}agent-adherence, whenever the status changes.",
    )
    schedule_refresh: Duration = Field(300.0, gt=0, description="How often today's schedule is re-read.")
    adherence_rules: dict[str, list[State]] = Field(
        default_factory=dict,
        description="Scheduled activity type (e.g. in_service, break; 'unscheduled' for none) -> the canonical "
        "states in adherence during it; overrides the built-in table per type.",
    )
    schedule_path: str = "/api/rest/scheduling/schedule/activity/detail"
    contact_monitoring: bool = Field(
        False,
        description="Poll contact monitoring (/monitoring/contacts/lite, needs Administer Tenant): the gauge "
        "streamd_calabrio_contacts and a streamd.source.Status (scope recording) when recording stops.",
    )
    contact_monitoring_interval: Duration = Field(60.0, gt=0, description="Contact monitoring poll interval.")
    recording_min_contacts: int = Field(
        5,
        ge=1,
        description="Recording counts as stopped when at least this many contacts of the past 15 minutes "
        "have no audio at all.",
    )
    contacts_path: str = "/api/rest/monitoring/contacts/lite"
    activity_path: str = "/api/rest/scheduling/realTime/activity/detail"
    adherence_path: str = "/api/rest/scheduling/adherence/agent"
    agents_path: str = "/api/rest/scheduling/agent"
    teams_path: str = Field(
        "/api/rest/org/common/team/permission/ViewOrg",
        description="The teams in scope (Team (with Scope) API, 002 L4496); empty: teams are not read.",
    )
    services_path: str = Field(
        "/api/rest/scheduling/service",
        description="The service queues (GET Service API, 002 L5100); empty: queues are not read.",
    )
    authorize_path: str = "/api/rest/authorize"

    @field_validator("tenant_timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r} (use an IANA name like America/Chicago)") from None
        return value

    @model_validator(mode="after")
    def _overlap_fits(self) -> CalabrioSourceConfig:
        if self.overlap >= self.max_window:
            raise ValueError("overlap must be shorter than max_window")
        return self

    def build(self, deps: SourceDeps) -> Source:
        """Construct the runtime source."""
        from streamd.sources.calabrio.source import CalabrioSource

        return CalabrioSource(self, deps)
