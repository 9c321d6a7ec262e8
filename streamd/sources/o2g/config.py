"""Configuration of the O2G source (``kind: o2g``).

Rules:

1. Everything is validated before the daemon starts: package names and event names against the
   seed's package list (004 L2083-2099, plus ``OnServerStart`` under ``system``, 004 L8949), the
   ``"*"`` wildcard only for an administrator session (004 L2107), ``ids`` never sent for
   ``system`` / ``pbxManagement`` (004 L2101), the subscription timeout ``0`` or 2..60 minutes
   (the model, 004 L2395), webhook settings only with ``delivery: webhook``.
2. What the model allows but the guide's prose advises against is accepted with a warning
   (:meth:`O2GSourceConfig.warnings`, logged when the source starts): a subscription timeout of
   2..9 minutes (the prose says 10 minutes minimum, 004 L2116, L2140), ``OnServerStart`` over
   the chunk channel (it needs a webhook, 004 L8950).
3. ``pilot`` and ``rsi`` selectors carry pilot numbers, not users (004 L2102-2103): ``"*"`` there
   stands for the pilots streamd discovers (``GET /pbxs``, ``GET /acd/{node}/pilots``) at each
   subscription (:func:`selectors_for` takes them).
4. ``url`` is the server root: streamd discovers ``{url}/api/rest``; a url already ending in
   ``/api/rest`` is used as is. ``secondary_url`` is the other member of an HA pair.
5. TLS is the shared :class:`~streamd.sources.http.TlsSettings` (``verify_tls``, ``ca_file``);
   ``verify_tls: false`` is refused unless ``allow_insecure_tls: true`` says it again (ALE's SDK
   ``rejectInsecureEnvironment``).
6. :meth:`O2GSourceConfig.build` imports the runtime lazily, so loading a config never imports
   httpx/starlette code paths it does not need.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

from pydantic import Field, field_validator, model_validator

from streamd.config_types import Duration, HttpUrl, Secret, SourceName
from streamd.sources.http import TlsSettings

if TYPE_CHECKING:
    from streamd.sources.base import Source, SourceDeps

# The seed's package list (004 L2083-2099).
PACKAGE_EVENTS: dict[str, tuple[str, ...]] = {
    "telephony": (
        "OnCallCreated",
        "OnCallModified",
        "OnCallRemoved",
        "OnUserStateModified",
        "OnDeviceStateModified",
        "OnTelephonyState",
        "OnDynamicStateChanged",
    ),
    "eventSummary": ("OnEventSummaryUpdated",),
    "unifiedComLog": (
        "OnComRecordCreated",
        "OnComRecordModified",
        "OnComRecordsDeleted",
        "OnComRecordsAck",
        "OnComRecordsUnAck",
    ),
    "user": ("OnUserInfoChanged",),
    "userManagement": ("OnUserCreated", "OnUserDeleted", "OnUserInfoChanged"),
    "routingManagement": ("OnRoutingStateChanged",),
    "agent": (
        "OnAgentStateChanged",
        "OnSupervisorHelpRequested",
        "OnSupervisorHelpCancelled",
        "OnAgentSkillChanged",
    ),
    "rsi": (
        "OnRouteRequest",
        "OnRouteEnd",
        "OnToneGeneratedStart",
        "OnToneGeneratedStop",
        "OnDigitCollected",
    ),
    "pilot": ("OnPilotCallCreated", "OnPilotCallQueued", "OnPilotCallRemoved"),
    "system": ("OnLicenseExpiration", "OnPbxLoaded", "OnCtiLinkDown", "OnCtiLinkUp"),
    "pbxManagement": (
        "OnPbxObjectInstanceCreated",
        "OnPbxObjectInstanceModified",
        "OnPbxObjectInstanceDeleted",
    ),
    "rti": (
        "OnAgentRtiChanged",
        "OnPilotRtiChanged",
        "OnPGAgentRtiChanged",
        "OnQueueRtiChanged",
        "OnPGOtherRtiChanged",
    ),
    "acdstats": ("OnAcdStatsProgress",),
}

# Events catalogued under a package but missing from its list: accepted in ``names`` only.
# OnServerStart is a Maintenance (system) notification (004 L8768, L8949-8954).
EXTRA_NAMES: dict[str, tuple[str, ...]] = {"system": ("OnServerStart",)}

Package = Literal[
    "telephony",
    "eventSummary",
    "unifiedComLog",
    "user",
    "userManagement",
    "routingManagement",
    "agent",
    "rsi",
    "pilot",
    "system",
    "pbxManagement",
    "rti",
    "acdstats",
]

# Packages whose selector MUST NOT carry ids (004 L2101).
NO_IDS_PACKAGES = frozenset({"system", "pbxManagement"})
# Packages only an administrator session may subscribe to (004 L8749, L10659, L14343, L14639, L15671).
ADMIN_PACKAGES = frozenset({"system", "pbxManagement", "pilot", "rti", "acdstats", "userManagement"})
# Packages whose ids are pilot numbers (004 L2102-2103): "*" stands for the pilots discovered.
PILOT_PACKAGES = frozenset({"pilot", "rsi"})
GUIDE_MIN_TIMEOUT = 10
"""The subscription timeout the guide's prose gives as its minimum, in minutes (004 L2116, L2140)."""


def package_ids(config: O2GSourceConfig, package: Package) -> list[str]:
    """The ids configured for ``package``: ``package_ids[package]``, else ``ids``."""
    return list(config.package_ids.get(package, config.ids))


def discovers_pilots(config: O2GSourceConfig) -> bool:
    """True when the subscription needs the discovered pilot numbers (a pilot package on ``"*"``)."""
    return any(p in PILOT_PACKAGES and "*" in package_ids(config, p) for p in config.packages)


def selectors_for(config: O2GSourceConfig, pilots: Sequence[str] | None = None) -> list[dict[str, list[str]]]:
    """The subscription selectors: one per package (004 L2100), ``ids`` absent where required.

    Args:
        config: the validated source config.
        pilots: the pilot numbers discovered; a ``pilot``/``rsi`` package configured with ``"*"``
            gets them as its ids, and no selector at all when there are none (``None``: not
            discovered, ``"*"`` is sent as configured).

    Returns:
        The ``filter.selectors`` list of the ``SubscriptionRequest``.
    """
    selectors: list[dict[str, list[str]]] = []
    for package in config.packages:
        names = list(config.names.get(package, ())) or [package]
        selector: dict[str, list[str]] = {"names": names}
        if package not in NO_IDS_PACKAGES:
            ids = package_ids(config, package)
            if package in PILOT_PACKAGES and "*" in ids and pilots is not None:
                ids = list(pilots)
            if not ids:
                continue
            selector["ids"] = ids
        selectors.append(selector)
    return selectors


def _default_packages() -> list[Package]:
    return ["telephony", "agent"]


class O2GSourceConfig(TlsSettings):
    """An ALE OmniPCX Open Gateway: events over the HTTP chunk channel or as webhooks."""

    kind: Literal["o2g"] = "o2g"
    name: SourceName
    url: HttpUrl = Field(
        description="Server root (streamd discovers {url}/api/rest); a url ending in /api/rest is used as is.",
    )
    secondary_url: HttpUrl | None = Field(
        default=None,
        description="Root of the other server of an HA pair; streamd fails over to it and back.",
    )
    username: str = Field(
        min_length=1, description="O2G login (an administrator for '*' and admin packages)."
    )
    password: Secret = Field(description="O2G password.")
    admin: bool = Field(default=True, description="The login is an O2G administrator.")
    packages: list[Package] = Field(
        default_factory=_default_packages,
        min_length=1,
        description="Event packages to subscribe to (004 L2083-2099).",
    )
    ids: list[str] = Field(
        default_factory=lambda: ["*"],
        min_length=1,
        description=(
            "Selector ids (logins, pilot/RSI/ACD numbers); '*' = all users (admin only), and for"
            " pilot/rsi every pilot streamd discovers."
        ),
    )
    package_ids: dict[Package, list[str]] = Field(
        default_factory=dict,
        description="Per-package ids overriding `ids` (e.g. pilot: ['60141'], rsi: ['65000']).",
    )
    names: dict[Package, list[str]] = Field(
        default_factory=dict,
        description="Per-package event names to subscribe to instead of the whole package.",
    )
    delivery: Literal["chunk", "webhook"] = Field(
        default="chunk", description="chunk: streamd reads the HTTP chunk channel; webhook: O2G POSTs events."
    )
    network: Literal["private", "public"] = Field(
        default="private",
        description=(
            "Which URLs O2G returns to try first: private (intranet) or public (reverse proxy); the"
            " other ones are tried when the first cannot be reached, as ALE's SDK does."
        ),
    )
    allow_insecure_tls: bool = Field(
        default=False,
        description="Required with verify_tls: false (ALE's SDK rejectInsecureEnvironment): say it twice.",
    )
    status_interval: Duration = Field(
        default=30.0,
        gt=0,
        description=(
            "Seconds between reads of GET /system/status (admin): a new startDate is an O2G restart,"
            " a new HA primary a switchover (a Gap, a new subscription, a snapshot)."
        ),
    )
    idle_timeout: Duration = Field(
        default=90.0,
        gt=0,
        description=(
            "No byte on the chunk channel for this long -> reconnect; webhook: no POST and no"
            " status answer for this long -> retrying."
        ),
    )
    channel_open_timeout: Duration = Field(
        default=30.0, gt=0, description="Deadline to open the chunk channel after subscribing (O2G: 60 s)."
    )
    reopen_window: Duration = Field(
        default=60.0,
        gt=0,
        description=(
            "How long a chunk channel that cannot be reopened is retried (with backoff) on the same"
            " subscription: O2G closes a subscription whose channel stayed closed for one minute"
            " (004 L2145). Then the session is given up and the other server of an HA pair tried first."
        ),
    )
    subscription_timeout: int = Field(
        default=0,
        description=(
            "Subscription timeout in minutes: 0 = none (keepalive events), or 2..60 (004 L2395;"
            " below 10 the guide's prose advises against it: a warning)."
        ),
    )
    keepalive_interval: Duration | None = Field(
        default=None, gt=0, description="Session keepalive period; default a third of the session TTL."
    )
    session_ttl: int | None = Field(
        default=None, gt=0, description="Requested session time-to-live in seconds (O2G >= 2.7.4)."
    )
    request_timeout: Duration = Field(default=10.0, gt=0, description="Timeout of each REST request.")
    application_name: str = Field(
        default="streamd", min_length=1, description="SessionRequest.applicationName (logging/statistics)."
    )
    max_event_size: int = Field(
        default=1 << 20,
        ge=1024,
        description="Largest accepted event in bytes. A larger one is a dead letter (its first 64 KiB); "
        "when it arrived whole in one read the events after it are still read, otherwise (the usual "
        "case: reads are 64 KiB) the chunk channel ends and is reopened on the same subscription, "
        "and what O2G had written behind it on that connection is lost.",
    )
    snapshot: bool = Field(
        default=True,
        description="After every (re)subscribe publish agent and pilot state with snapshot=true.",
    )
    snapshot_concurrency: int = Field(
        default=8, ge=1, le=64, description="Parallel REST reads for a snapshot."
    )
    rti_obs_period: int = Field(
        default=15, ge=15, le=60, description="RTI context observation period in minutes (004 L15529-15562)."
    )
    rti_notif_frequency: int = Field(
        default=10, ge=5, description="RTI context notification frequency in seconds (minimum 5)."
    )
    webhook_public_url: HttpUrl | None = Field(
        default=None,
        description="URL O2G POSTs events to: streamd's /webhooks/o2g/{name} as reachable from O2G.",
    )
    webhook_secret: Secret | None = Field(
        default=None,
        description="Shared secret: added to the webhook URL as ?secret=... and required on every POST.",
    )
    webhook_deadline: Duration = Field(
        default=5.0, gt=0, description="A webhook POST answers 503 if its events are not durable by then."
    )

    @field_validator("subscription_timeout")
    @classmethod
    def _timeout_range(cls, value: int) -> int:
        if value != 0 and not 2 <= value <= 60:
            raise ValueError("subscription_timeout is 0 (no timeout) or 2..60 minutes")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> O2GSourceConfig:
        problems: list[str] = []
        if len(set(self.packages)) != len(self.packages):
            problems.append("packages: a package is listed twice")
        for package, events in self.names.items():
            known = {*PACKAGE_EVENTS[package], *EXTRA_NAMES.get(package, ())}
            unknown = sorted(set(events) - known)
            if unknown or not events:
                problems.append(f"names.{package}: not events of {package}: {unknown or '[]'}")
            if package not in self.packages:
                problems.append(f"names.{package}: the package is not in packages")
        if not self.admin:
            admin_only = sorted(set(self.packages) & ADMIN_PACKAGES)
            if admin_only:
                problems.append(f"packages {admin_only} need an administrator session (admin: true)")
            all_ids = [self.ids, *self.package_ids.values()]
            if any("*" in ids for ids in all_ids):
                problems.append("ids: '*' (all users) needs an administrator session (admin: true)")
        if self.delivery == "webhook" and not self.webhook_public_url:
            problems.append("webhook_public_url is required with delivery: webhook")
        if self.delivery == "chunk" and (self.webhook_public_url or self.webhook_secret):
            problems.append("webhook_public_url/webhook_secret apply only to delivery: webhook")
        if not self.verify_tls and not self.allow_insecure_tls:
            problems.append(
                "verify_tls: false also needs allow_insecure_tls: true (an unverified connection"
                " lets anyone on the path read the O2G credentials; prefer ca_file)"
            )
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def warnings(self) -> list[str]:
        """What the model allows but the guide's prose advises against (module rule 2)."""
        found: list[str] = []
        if self.delivery == "chunk" and 0 < self.subscription_timeout < GUIDE_MIN_TIMEOUT:
            found.append(
                f"subscription_timeout {self.subscription_timeout} min: the O2G guide says"
                f" {GUIDE_MIN_TIMEOUT} minutes minimum (004 L2116), its model 2 (004 L2395);"
                " a server may refuse or raise it"
            )
        if self.delivery == "webhook" and self.admin and self.status_interval >= self.idle_timeout:
            found.append(
                f"status_interval {self.status_interval:g}s is not shorter than idle_timeout"
                f" {self.idle_timeout:g}s: a quiet webhook source will be taken for a silent server"
            )
        if self.delivery == "chunk" and "OnServerStart" in self.names.get("system", ()):
            found.append("names.system OnServerStart: O2G sends it only to a webhook (004 L8950)")
        return found

    @property
    def api_root(self) -> str:
        """The discovery URL ``{url}/api/rest`` of the primary server."""
        return api_root(self.url)

    def build(self, deps: SourceDeps) -> Source:
        """Construct the runtime source.

        Args:
            deps: what the application hands to every source.

        Returns:
            The :class:`~streamd.sources.o2g.source.O2GSource` for this config.
        """
        from streamd.sources.o2g.source import O2GSource

        return O2GSource(self, deps)


def api_root(url: str) -> str:
    """``{url}/api/rest`` for a server root; a url already ending in ``/api/rest`` as is."""
    base = url.rstrip("/")
    return base if base.endswith("/api/rest") else f"{base}/api/rest"
