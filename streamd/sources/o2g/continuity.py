"""What an O2G source can vouch for: the PBX's system events, gaps in the stream, re-snapshots.

Rules:

1. System events (004 L8926-8954) are published like any other event and acted upon here
   (:meth:`Continuity.react`, called by the chunk pump and the webhook receiver for each decoded
   system event; no I/O, the returned events join the same push):
   ``OnCtiLinkDown`` marks the node's data stale (a ``streamd.source.Status`` ``stale`` for
   ``node:{nodeId}`` and ``streamd_o2g_cti_link{source,node}`` 0); ``OnCtiLinkUp`` marks it live
   again (1) and asks for a full re-snapshot, as ``OnPbxLoaded`` and ``OnServerStart`` do;
   ``OnLicenseExpiration`` logs a warning and sets ``streamd_o2g_license_days{source}``.
2. A re-snapshot that is asked for is run by the session (:meth:`Continuity.wanted`), once
   however many events asked for it while one was waiting.
3. Gaps: once the source streamed (:meth:`Continuity.streaming`), losing the stream
   (:meth:`Continuity.lost`: a subscription gone, a session lost, a channel not reopened within
   O2G's minute) is recorded with when it happened; the first loss wins until the next
   subscription's channel is open, and :meth:`Continuity.gap` then returns the one
   ``streamd.source.Gap`` event to publish before that subscription's snapshot. A channel reopened
   on the same subscription within the window is no gap: O2G queued its events.
4. A restart or an HA switchover of O2G (:mod:`.status`) names the loss
   (:meth:`Continuity.restarted`): a loss already recorded keeps its start and gets the restart
   as its reason, else one is recorded if the source was streaming.
5. Across daemon restarts (:meth:`Continuity.record`, :meth:`Continuity.resumed`): the source
   keeps, in its cursor store, until when its stream was known complete (now while streaming, the
   start of a loss not yet marked otherwise) and writes it while streaming and when it stops. A
   daemon that finds such a record starts with a loss from then, reason ``daemon restart``: the
   first subscription's snapshot follows one Gap (the events O2G had for the previous run's
   subscription are gone with it: webhook POSTs nobody took, a chunk queue nobody read). An
   unreadable record is logged and ignored.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any, Final

import anyio
import orjson
from prometheus_client import Gauge

from streamd.events import Event, SourceGap, SourceStatus, utcnow
from streamd.telemetry import REGISTRY

log = logging.getLogger("streamd.sources.o2g")

SYSTEM_EVENTS: Final = frozenset(
    {"OnCtiLinkDown", "OnCtiLinkUp", "OnPbxLoaded", "OnServerStart", "OnLicenseExpiration"}
)
"""The PBX's system events streamd acts upon (rule 1)."""
RESNAPSHOT_EVENTS: Final = frozenset({"OnCtiLinkUp", "OnPbxLoaded", "OnServerStart"})

CTI_LINK = Gauge(
    "streamd_o2g_cti_link",
    "1 while the CTI link of an O2G PBX node is up, 0 after OnCtiLinkDown (its data are stale).",
    ["source", "node"],
    registry=REGISTRY,
)
LICENSE_DAYS = Gauge(
    "streamd_o2g_license_days",
    "Days until the O2G licence file expires (negative: expired since), from OnLicenseExpiration.",
    ["source"],
    registry=REGISTRY,
)


class Continuity:
    """One O2G source's continuity across its sessions (module rules).

    Attributes:
        source: the source name.
        stale: the nodes whose CTI link is down.
    """

    def __init__(self, source: str) -> None:
        self.source = source
        self.stale: set[str] = set()
        self._streaming = False
        self._lost: tuple[datetime, str] | None = None
        self._wanted: anyio.Event | None = None

    # -- rule 1 ----------------------------------------------------------------------------------

    def react(self, event: dict[str, Any]) -> list[Event]:
        """Act on one system event; the status events to publish after it."""
        name = event.get("eventName")
        node = str(event.get("nodeId", ""))
        if name in RESNAPSHOT_EVENTS:
            log.info("o2g %s: %s %s: re-snapshot", self.source, name, node or event.get("serverId", ""))
            self.wanted().set()
        if name == "OnCtiLinkDown":
            log.warning("o2g %s: CTI link of node %s is down: its data are stale", self.source, node)
            CTI_LINK.labels(self.source, node).set(0)
            self.stale.add(node)
            return [self._status(node, "stale", "OnCtiLinkDown")]
        if name == "OnCtiLinkUp":
            CTI_LINK.labels(self.source, node).set(1)
            self.stale.discard(node)
            return [self._status(node, "live", "OnCtiLinkUp")]
        if name == "OnLicenseExpiration":
            days = event.get("nbDays")
            if not isinstance(days, int) or isinstance(days, bool):
                when = f"expires soon or has expired (nbDays {days!r})"
            else:
                when = f"expires in {days} days" if days >= 0 else f"expired {-days} days ago"
            log.warning("o2g %s: the O2G licence file %s: %s", self.source, when, event.get("message", ""))
            if isinstance(days, int) and not isinstance(days, bool):
                LICENSE_DAYS.labels(self.source).set(days)
        return []

    def _status(self, node: str, status: str, reason: str) -> Event:
        return SourceStatus(
            source=self.source, scope=f"node:{node}", status=status, reason=reason, since=utcnow()
        ).to_event()

    # -- rule 2 ----------------------------------------------------------------------------------

    def wanted(self) -> anyio.Event:
        """Set when a re-snapshot was asked for; :meth:`served` before running it."""
        if self._wanted is None:
            self._wanted = anyio.Event()
        return self._wanted

    def served(self) -> None:
        """The re-snapshot asked for starts now: later requests ask for another."""
        self._wanted = anyio.Event()

    # -- rule 3 ----------------------------------------------------------------------------------

    def streaming(self) -> None:
        """A subscription's stream is complete from now on (its channel is open, its snapshot taken)."""
        self._streaming = True

    def lost(self, reason: str, since: datetime | None = None) -> None:
        """The stream stopped being complete at ``since`` (default now); nothing before streaming."""
        if self._streaming:
            self._streaming = False
            self._lost = (since or utcnow(), reason)

    # -- rule 4 ----------------------------------------------------------------------------------

    def restarted(self, reason: str, since: datetime | None = None) -> None:
        """O2G restarted or switched over (``reason``); the stream was complete until ``since``."""
        if self._lost is not None:
            first, why = self._lost
            self._lost = (first, f"{reason}; {why}")
        else:
            self.lost(reason, since)

    # -- rule 5 ----------------------------------------------------------------------------------

    def record(self) -> str | None:
        """What to keep across daemon restarts: until when the stream is known complete (or None
        when this run never streamed and has nothing pending)."""
        if self._streaming:
            until = utcnow()
        elif self._lost is not None:
            until = self._lost[0]
        else:
            return None
        return orjson.dumps({"complete_until": until.isoformat()}).decode()

    def resumed(self, saved: str | None) -> None:
        """A previous run kept ``saved`` (:meth:`record`): its end is a loss, ``daemon restart``."""
        if saved is None:
            return
        try:
            until = datetime.fromisoformat(orjson.loads(saved)["complete_until"])
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            log.warning("o2g %s: ignoring an unreadable continuity record %r: %s", self.source, saved, exc)
            return
        if until.tzinfo is None:
            log.warning("o2g %s: ignoring a continuity record without a time zone: %r", self.source, saved)
            return
        self._lost = (until, "daemon restart")

    def gap(self) -> Event | None:
        """The ``streamd.source.Gap`` to publish before the new subscription's snapshot, once."""
        if self._lost is None:
            return None
        since, reason = self._lost
        self._lost = None
        return SourceGap(source=self.source, from_=since, to=utcnow(), reason=reason).to_event()
