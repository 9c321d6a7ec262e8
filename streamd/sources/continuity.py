"""What a push source can vouch for: gaps in its stream, across sessions and daemon restarts.

Used by every source that streams (the O2G subscription, the Xima websocket); what a vendor adds
(O2G's system events and re-snapshots: :mod:`streamd.sources.o2g.continuity`) stays in its
package.

Rules:

1. Gaps: once the source streamed (:meth:`Continuity.streaming`), losing the stream
   (:meth:`Continuity.lost`: a subscription gone, a session lost, a socket closed) is recorded
   with when it happened; the first loss wins until the stream is complete again, and
   :meth:`Continuity.gap` then returns the one ``streamd.source.Gap`` event to publish before the
   next snapshot. The loss is cleared only once the caller confirms the Gap durable
   (:meth:`Continuity.gap_sent`, after its emit returned): an emit that raised leaves it for the
   next snapshot. A loss before the source ever streamed is no gap: nothing was missed.
2. A restart of the vendor's server names the loss (:meth:`Continuity.restarted`): a loss already
   recorded keeps its start and gets the restart as its reason, else one is recorded if the
   source was streaming.
3. Across daemon restarts (:meth:`Continuity.record`, :meth:`Continuity.resumed`): the source
   keeps, in its cursor store, until when its stream was known complete (now while streaming, the
   start of a loss not yet marked otherwise) and the host that wrote it. A daemon that finds such
   a record starts with a loss from then: its first snapshot follows one Gap, reason ``daemon
   restart`` when the record is this host's (or names none), else ``daemon restart or takeover
   (the stream was last recorded on {host})`` (with several replicas the cursor store moves with
   the source: a new owner reads its predecessor's record). An unreadable record is logged and
   ignored.
4. Status: :meth:`Continuity.status` builds the ``streamd.source.Status`` event of one scope of
   the source (e.g. ``node:{nodeId}``). No I/O here: the caller publishes what it gets.
"""

from __future__ import annotations

import logging
import socket
from datetime import datetime

import orjson

from streamd.events import Event, SourceGap, SourceStatus, utcnow


class Continuity:
    """One source's continuity across its sessions (module rules).

    Args:
        source: the source name.
        vendor: names the log lines (``"{vendor} {source}: ..."``, logger
            ``streamd.sources.{vendor}``); without it, logger ``streamd.sources`` and the source
            name alone.
        host: this daemon's host in the record (rule 3); default the host name.
    """

    def __init__(self, source: str, vendor: str | None = None, *, host: str | None = None) -> None:
        self.source = source
        self.host = host if host is not None else socket.gethostname()
        self._log = logging.getLogger(f"streamd.sources.{vendor}" if vendor else "streamd.sources")
        self._who = f"{vendor} {source}" if vendor else source
        self._streaming = False
        self._lost: tuple[datetime, str] | None = None

    # -- rule 1 ----------------------------------------------------------------------------------

    def streaming(self) -> None:
        """The stream is complete from now on (e.g. a channel open, its snapshot taken)."""
        self._streaming = True

    def lost(self, reason: str, since: datetime | None = None) -> None:
        """The stream stopped being complete at ``since`` (default now); nothing before streaming."""
        if self._streaming:
            self._streaming = False
            self._lost = (since or utcnow(), reason)

    def gap(self) -> Event | None:
        """The ``streamd.source.Gap`` to publish before the next snapshot; the loss stays recorded
        until :meth:`gap_sent` confirms the Gap was published (an emit that failed leaves it for
        the next attempt)."""
        if self._lost is None:
            return None
        since, reason = self._lost
        return SourceGap(source=self.source, from_=since, to=utcnow(), reason=reason).to_event()

    def gap_sent(self, gap: Event) -> None:
        """``gap`` (from :meth:`gap`) is durable: the loss it reported is over. A loss that changed
        meanwhile (a restart named it) stays for the next Gap."""
        data = gap.data
        if self._lost is not None and isinstance(data, SourceGap) and self._lost == (data.from_, data.reason):
            self._lost = None

    # -- rule 2 ----------------------------------------------------------------------------------

    def restarted(self, reason: str, since: datetime | None = None) -> None:
        """The server restarted or switched over (``reason``); the stream was complete until ``since``."""
        if self._lost is not None:
            first, why = self._lost
            self._lost = (first, f"{reason}; {why}")
        else:
            self.lost(reason, since)

    # -- rule 3 ----------------------------------------------------------------------------------

    def record(self) -> str | None:
        """What to keep across daemon restarts: until when the stream is known complete (or None
        when this run never streamed and has nothing pending)."""
        if self._streaming:
            until = utcnow()
        elif self._lost is not None:
            until = self._lost[0]
        else:
            return None
        return orjson.dumps({"complete_until": until.isoformat(), "host": self.host}).decode()

    def resumed(self, saved: str | None) -> None:
        """A previous run kept ``saved`` (:meth:`record`): its end is a loss (rule 3)."""
        if saved is None:
            return
        try:
            record = orjson.loads(saved)
            until = datetime.fromisoformat(record["complete_until"])
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            self._log.warning("%s: ignoring an unreadable continuity record %r: %s", self._who, saved, exc)
            return
        if until.tzinfo is None:
            self._log.warning("%s: ignoring a continuity record without a time zone: %r", self._who, saved)
            return
        host = record.get("host")
        if isinstance(host, str) and host and host != self.host:
            reason = f"daemon restart or takeover (the stream was last recorded on {host})"
        else:
            reason = "daemon restart"
        self._lost = (until, reason)

    # -- rule 4 ----------------------------------------------------------------------------------

    def status(self, scope: str, status: str, reason: str) -> Event:
        """The ``streamd.source.Status`` event of ``scope`` (e.g. ``node:2``), since now."""
        return SourceStatus(
            source=self.source, scope=scope, status=status, reason=reason, since=utcnow()
        ).to_event()
