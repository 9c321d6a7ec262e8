"""What an O2G source adds to :mod:`streamd.sources.continuity`: the PBX's system events, re-snapshots.

Gaps, restarts and the record kept across daemon restarts are the shared
:class:`~streamd.sources.continuity.Continuity` (its rules 1-4); :class:`O2GContinuity` adds:

Rules:

1. System events (004 L8926-8954) are published like any other event and acted upon here
   (:meth:`O2GContinuity.react`, called by the chunk pump and the webhook receiver for each
   decoded system event; no I/O, the returned events join the same push):
   ``OnCtiLinkDown`` marks the node's data stale (a ``streamd.source.Status`` ``stale`` for
   ``node:{nodeId}`` and ``streamd_o2g_cti_link{source,node}`` 0); ``OnCtiLinkUp`` marks it live
   again (1) and asks for a full re-snapshot, as ``OnPbxLoaded`` and ``OnServerStart`` do;
   ``OnLicenseExpiration`` logs a warning and sets ``streamd_o2g_license_days{source}``.
2. A re-snapshot that is asked for is run by the session (:meth:`O2GContinuity.wanted`), once
   however many events asked for it while one was waiting.
3. Gaps (shared rule 1): the stream is lost when a subscription is gone, a session lost, a
   channel not reopened within O2G's minute; the Gap goes before the next subscription's
   snapshot. A channel reopened on the same subscription within the window is no gap: O2G queued
   its events.
4. A restart or an HA switchover of O2G (:mod:`.status`) names the loss (shared rule 2).
5. Across daemon restarts (shared rule 3) the record is written while streaming and when the
   source stops (:mod:`.source`); the events O2G had for the previous run's subscription are gone
   with it (webhook POSTs nobody took, a chunk queue nobody read), so its first snapshot follows
   one Gap ``daemon restart`` (``daemon restart or takeover ...`` when another host wrote the
   record: a replica that took the source over).
"""

from __future__ import annotations

import logging
from typing import Any, Final

import anyio
from prometheus_client import Gauge

from streamd.events import Event
from streamd.sources.continuity import Continuity
from streamd.telemetry import REGISTRY

__all__ = ["CTI_LINK", "LICENSE_DAYS", "RESNAPSHOT_EVENTS", "SYSTEM_EVENTS", "O2GContinuity"]

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


class O2GContinuity(Continuity):
    """One O2G source's continuity across its sessions (module rules).

    Attributes:
        source: the source name.
        stale: the nodes whose CTI link is down.
    """

    def __init__(self, source: str, *, host: str | None = None) -> None:
        super().__init__(source, "o2g", host=host)
        self.stale: set[str] = set()
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
            return [self.status(f"node:{node}", "stale", "OnCtiLinkDown")]
        if name == "OnCtiLinkUp":
            CTI_LINK.labels(self.source, node).set(1)
            self.stale.discard(node)
            return [self.status(f"node:{node}", "live", "OnCtiLinkUp")]
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

    # -- rule 2 ----------------------------------------------------------------------------------

    def wanted(self) -> anyio.Event:
        """Set when a re-snapshot was asked for; :meth:`served` before running it."""
        if self._wanted is None:
            self._wanted = anyio.Event()
        return self._wanted

    def served(self) -> None:
        """The re-snapshot asked for starts now: later requests ask for another."""
        self._wanted = anyio.Event()
