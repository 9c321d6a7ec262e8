"""Configuration of an Alvaria Cloud real-time reporting source (``kind: alvaria``).

Rules:

1. ``base_url`` is the organisation root, ending in ``/organizations/{orgId}``; every query path is
   appended to it (the seed's "Base URLs" list is empty, so nothing is derived from the org id).
2. A query needs its scope: teamActivity/userActivity need ``team_ids``, channelActivity needs
   ``work_type_ids``, listActivity needs ``contact_lists``; presence runs org-wide unless
   ``presence_work_type_ids`` narrows it. A query without its scope is a config error.
3. When ``queries`` is omitted, the queries whose scopes are configured run, plus presence.
4. Importing this module never imports the runtime (``build`` does that lazily).
5. Scopes can be discovered instead of listed (``discover``): team ids, worktype ids and contact
   list names are then read from the endpoints the guide names (003 L111 ``provisioning/teams``,
   L256 ``provisioning/workTypes``, L49 ``campaign/lists``; their paths are configurable in
   ``discover_paths`` because the guide does not document them) every ``discover_every``. A kind
   is either discovered or listed, not both; a discovered kind counts as configured for rule 2.
   Presence polls the discovered worktypes too (one request each, as with
   ``presence_work_type_ids``), unless ``presence_work_type_ids`` lists its worktypes; while
   the listing names none, presence runs org-wide.
6. TLS is configured like every vendor client's (:class:`~streamd.sources.http.TlsSettings`:
   ``verify_tls``, ``ca_file``), for the token endpoint and the queries alike.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import Field, field_validator, model_validator

from streamd.config_types import Duration, HttpUrl, Secret, SourceName
from streamd.events import State
from streamd.sources.http import TlsSettings

if TYPE_CHECKING:
    from streamd.sources.base import Source, SourceDeps

QueryName = Literal["listActivity", "teamActivity", "userActivity", "channelActivity", "presence"]
ScopeKind = Literal["teams", "work_types", "contact_lists"]
"""A kind of scope that can be discovered (config rule 5)."""

DISCOVER_PATHS: dict[ScopeKind, str] = {
    "teams": "/provisioning/teams",
    "work_types": "/provisioning/workTypes",
    "contact_lists": "/campaign/lists",
}
"""Where each scope kind is listed, below ``base_url`` (003 L111, L256, L49)."""

SCOPE_KIND_OF: dict[QueryName, ScopeKind] = {
    "teamActivity": "teams",
    "userActivity": "teams",
    "channelActivity": "work_types",
    "listActivity": "contact_lists",
}
"""The scope kind each scoped query polls (presence has none)."""

STATIC_LIST: dict[ScopeKind, str] = {
    "teams": "team_ids",
    "work_types": "work_type_ids",
    "contact_lists": "contact_lists",
}
"""The config field that lists each scope kind statically."""

ALL_QUERIES: tuple[QueryName, ...] = (
    "listActivity",
    "teamActivity",
    "userActivity",
    "channelActivity",
    "presence",
)


class AlvariaSourceConfig(TlsSettings):
    """One Alvaria Cloud organisation polled through the Real-Time Data Query API."""

    kind: Literal["alvaria"] = Field(description="Selects the Alvaria Cloud reporting source.")
    name: SourceName
    base_url: HttpUrl = Field(
        description="Organisation root, e.g. https://acme.via.aspect-cloud.net/via/v2/organizations/acme.",
    )
    token_url: HttpUrl = Field(
        description="OAuth2 token endpoint, e.g. https://myaspect.{region}.id.aspect-cloud.net"
        "/tokenservice/oauth2/access_token.",
    )
    client_id: str = Field(description="OAuth2 client id (client-credentials grant).")
    client_secret: Secret = Field(description="OAuth2 client secret.")
    api_key: Secret = Field(description="Value of the x-api-key header Alvaria requires on every call.")
    scope: str = Field(
        "reportingapi", description="OAuth2 scope requested; the reporting API needs reportingapi."
    )
    client_auth: Literal["basic", "body", "both"] = Field(
        "basic",
        description="How client id/secret reach the token endpoint: HTTP Basic, form fields, or both.",
    )
    queries: list[QueryName] | None = Field(
        None,
        description="Queries to poll. Default: those whose scopes are configured, plus presence.",
    )
    interval: Duration = Field(5.0, description="Poll interval of every query.")
    intervals: dict[QueryName, Duration] = Field(
        default_factory=dict, description="Per-query poll interval overrides, e.g. {listActivity: 30s}."
    )
    refresh_every: Duration = Field(
        300.0, description="A full snapshot (snapshot=true) of every query is published this often."
    )
    timeout: Duration | None = Field(
        None,
        description="Deadline of one request (one scope of one query); a scope that misses it backs "
        "off alone. Default 0.8 x the query's interval.",
    )
    scope_concurrency: int = Field(
        4, ge=1, description="Scopes (teams, worktypes, lists) of one query polled at the same time."
    )
    team_ids: list[str] = Field(
        default_factory=list, description="teamId scopes for teamActivity/userActivity."
    )
    work_type_ids: list[str] = Field(
        default_factory=list, description="workTypeId scopes for channelActivity."
    )
    contact_lists: list[str] = Field(default_factory=list, description="contactList names for listActivity.")
    discover: list[ScopeKind] = Field(
        default_factory=list,
        description="Scope kinds read from Alvaria instead of listed here: teams (provisioning/teams), "
        "work_types (provisioning/workTypes), contact_lists (campaign/lists). A new scope is polled "
        "without a config change, a removed one is dropped.",
    )
    discover_every: Duration = Field(
        600.0, gt=0, description="How often discovered scopes are read again (more than 0)."
    )
    discover_paths: dict[ScopeKind, str] = Field(
        default_factory=lambda: dict(DISCOVER_PATHS),
        description="Path below base_url (or a full URL) listing each discovered scope kind; the guide "
        "names these endpoints without documenting them.",
    )
    presence_work_type_ids: list[str] = Field(
        default_factory=list,
        description="Narrow presence to these workTypeIds (one request each); empty = all logged-on users, "
        "or the discovered worktypes when discover names work_types.",
    )
    tz_offset: str | None = Field(
        None, description="tzOffset for userActivity's *Local fields ('Z', '+01:00', '-0530', ...)."
    )
    empty_polls_before_removal: int = Field(
        3,
        ge=1,
        description="Consecutive empty answers needed before a scope's rows are published as removed "
        "(an empty answer can mean a permission problem, not an empty team).",
    )
    token_refresh_margin: Duration = Field(30.0, description="Refresh the token this long before it expires.")
    canonical: bool = Field(True, description="Also publish canonical agent-state / queue-metrics events.")
    state_map: dict[str, State] = Field(
        default_factory=dict,
        description="Overrides of the stateId -> canonical state table (keys compared case-insensitively).",
    )

    @field_validator("base_url")
    @classmethod
    def _org_root(cls, value: str) -> str:
        value = value.rstrip("/")
        if "/organizations/" not in value:
            raise ValueError("base_url must end in /organizations/{orgId}")
        return value

    @model_validator(mode="after")
    def _scopes_present(self) -> AlvariaSourceConfig:
        for kind in self.discover:
            if self.static_scopes(kind):
                raise ValueError(
                    f"{STATIC_LIST[kind]} lists scopes and discover names {kind}: use one or the other"
                )
        if len(set(self.discover)) != len(self.discover):
            raise ValueError("discover lists a scope kind twice")
        for query in self.queries or ():
            needed = SCOPE_KIND_OF.get(query)
            if needed is not None and not self.has_scopes(needed):
                raise ValueError(
                    f"query {query} needs at least one entry in {STATIC_LIST[needed]}, "
                    f"or {needed} in discover"
                )
        if self.queries is not None and len(set(self.queries)) != len(self.queries):
            raise ValueError("queries lists a query twice")
        if self.queries == []:
            raise ValueError("queries is empty: list at least one query, or omit it")
        return self

    def enabled_queries(self) -> tuple[QueryName, ...]:
        """The queries this source polls, in a stable order."""
        if self.queries is not None:
            return tuple(q for q in ALL_QUERIES if q in self.queries)
        derived: list[QueryName] = []
        if self.has_scopes("contact_lists"):
            derived.append("listActivity")
        if self.has_scopes("teams"):
            derived += ["teamActivity", "userActivity"]
        if self.has_scopes("work_types"):
            derived.append("channelActivity")
        derived.append("presence")
        return tuple(derived)

    def static_scopes(self, kind: ScopeKind) -> list[str]:
        """The scopes of ``kind`` listed in the config."""
        if kind == "teams":
            return self.team_ids
        return self.work_type_ids if kind == "work_types" else self.contact_lists

    def discovered_kind(self, query: QueryName) -> ScopeKind | None:
        """The scope kind ``query`` polls as discovered (rule 5), or None when its scopes are static:
        its own kind when discovered; presence the worktypes when they are discovered and
        ``presence_work_type_ids`` lists none."""
        if query == "presence":
            discovered = "work_types" in self.discover and not self.presence_work_type_ids
            return "work_types" if discovered else None
        kind = SCOPE_KIND_OF.get(query)
        return kind if kind is not None and kind in self.discover else None

    def has_scopes(self, kind: ScopeKind) -> bool:
        """Whether scopes of ``kind`` are listed or discovered."""
        return kind in self.discover or bool(self.static_scopes(kind))

    def interval_of(self, query: QueryName) -> float:
        """The poll interval of ``query`` (its override, else ``interval``)."""
        return self.intervals.get(query, self.interval)

    def timeout_of(self, query: QueryName) -> float:
        """The deadline of one request of ``query`` (one scope)."""
        return self.timeout if self.timeout is not None else 0.8 * self.interval_of(query)

    def build(self, deps: SourceDeps) -> Source:
        """Construct the runtime source (imported lazily)."""
        from streamd.sources.alvaria.source import AlvariaSource

        return AlvariaSource(self, deps)
