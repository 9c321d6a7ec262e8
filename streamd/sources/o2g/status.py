"""O2G's server status watch (issue 17 item 4): restarts, HA switchovers, webhook liveness.

Rules:

1. ``GET {base}/system/status`` (004 L8810-8838, L9088-9105; an administrator session) is read
   when a session starts and every ``status_interval`` seconds during it. Its ``startDate`` and,
   on an HA pair, its ``primary`` are remembered across sessions (:class:`StatusWatch`, one per
   source), per configured server (``url``, ``secondary_url``).
2. A ``startDate`` that changed means O2G restarted; a ``primary`` that changed means an HA
   switchover. Either is logged (a warning) and named as the reason of the continuity loss
   (:meth:`~streamd.sources.o2g.continuity.Continuity.restarted`): the Gap before the next
   snapshot says so. Seen during a session, it ends the session (:class:`ServerChanged`,
   transient): the supervisor opens a new one, which subscribes and snapshots again.
3. A read refused for good (:func:`refused_for_good`: ``NOT_ALLOWED``, not an administrator,
   ``NOT_SUPPORTED``, an error O2G marks ``canRetry: false``) turns the watch off for the source,
   with one line; any other failed read (Tomcat's bare 404 while O2G redeploys after a restart
   included) is logged and tried again at the next interval (a debug line), except a lost
   session, which ends the session as usual.
4. Liveness (webhook mode, :class:`Liveness`): every webhook POST and every status answer is a
   sign of life; none for ``idle_timeout`` seconds ends the session with a :class:`Silent`
   (transient: the source goes ``retrying``).
5. :func:`parse_status` is pure: a body that is not an object, or fields of the wrong type, give
   ``None`` for what cannot be read (tolerant reading: an absent ``startDate`` detects nothing,
   and the watch keeps its last known value until one is given again).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import anyio

from streamd.errors import FatalError, SourceError, TransientError
from streamd.events import Event, utcnow
from streamd.sources.base import Emit
from streamd.sources.continuity import Continuity
from streamd.sources.o2g.client import O2GClient
from streamd.sources.o2g.protocol import O2GRequestError, SessionExpired

log = logging.getLogger("streamd.sources.o2g")


class ServerChanged(TransientError):
    """O2G restarted or switched to the other server of its HA pair: open a new session."""

    error_type = "server_changed"


class Silent(TransientError):
    """No webhook POST and no status answer for ``idle_timeout``: the server is not reachable."""

    error_type = "silent"


@dataclass(frozen=True, slots=True)
class ServerStatus:
    """What the watch compares of a ``SystemStatus``."""

    start_date: str | None
    primary: str | None
    ha: bool


def parse_status(body: Any) -> ServerStatus:
    """The watched fields of a ``SystemStatus`` body (rule 5)."""
    if not isinstance(body, dict):
        return ServerStatus(None, None, False)
    start, primary, ha = body.get("startDate"), body.get("primary"), body.get("ha")
    return ServerStatus(
        start_date=str(start) if isinstance(start, (str, int)) and start != "" else None,
        primary=primary if isinstance(primary, str) and primary else None,
        ha=ha is True,
    )


class StatusWatch:
    """The last status seen, across the sessions of one source (rules 1-3)."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.last: dict[str, ServerStatus] = {}  # per server root (an HA pair configured as two)
        self.seen_at: datetime | None = None  # when the last status was read
        self.enabled = True

    def changed(self, status: ServerStatus, server: str = "") -> str | None:
        """Remember ``status`` of ``server``; the reason to give when it shows a restart or a
        switchover (failing over to the other configured server compares nothing)."""
        before = self.last.get(server)
        self.seen_at = utcnow()
        if before is None:
            self.last[server] = status
            return None
        self.last[server] = ServerStatus(  # a field missing from one answer keeps its last known value
            status.start_date or before.start_date, status.primary or before.primary, status.ha
        )
        reasons: list[str] = []
        if status.start_date is not None and before.start_date not in (None, status.start_date):
            reasons.append(f"O2G restarted (startDate {before.start_date} -> {status.start_date})")
        if status.primary is not None and before.primary not in (None, status.primary):
            reasons.append(f"O2G HA switchover (primary {before.primary} -> {status.primary})")
        if not reasons:
            return None
        reason = "; ".join(reasons)
        log.warning("o2g %s: %s: resubscribing and taking a new snapshot", self.source, reason)
        return reason

    def disable(self, why: str) -> None:
        """Stop reading the status for this source (rule 3)."""
        if self.enabled:
            self.enabled = False
            log.info(
                "o2g %s: no server status watch (restarts show as lost sessions only): %s", self.source, why
            )


class Liveness:
    """The last sign of life of a webhook source's server (rule 4)."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self.last = clock()

    def alive(self) -> None:
        """A webhook POST arrived or the status was answered."""
        self.last = self.clock()

    def silent_for(self) -> float:
        """Seconds since the last sign of life."""
        return self.clock() - self.last


class HeardEmit:
    """An :class:`~streamd.sources.base.Emit` that counts each call as a sign of life (rule 4)."""

    def __init__(self, emit: Emit, liveness: Liveness) -> None:
        self.emit, self.liveness = emit, liveness

    async def __call__(self, events: Sequence[Event]) -> None:
        self.liveness.alive()
        await self.emit(events)

    async def push(self, events: Sequence[Event]) -> None:
        self.liveness.alive()
        await self.emit.push(events)


def refused_for_good(exc: FatalError) -> bool:
    """The status read is refused for good (rule 3): NOT_ALLOWED, a refused login, NOT_SUPPORTED,
    an answer O2G marks ``canRetry: false``; not a bare 404 (Tomcat's, while O2G redeploys)."""
    return not isinstance(exc, O2GRequestError) or exc.final


async def read_status(client: O2GClient, watch: StatusWatch) -> ServerStatus | None:
    """One status read (rule 3): None when the watch is off or the read failed.

    Raises:
        SessionExpired: the session is gone.
    """
    if not watch.enabled:
        return None
    try:
        body = await client.get_json("/system/status", "system status")
    except SessionExpired:
        raise
    except FatalError as exc:
        if refused_for_good(exc):
            watch.disable(str(exc))
            return None
        log.debug("o2g %s: server status not read (again in the next interval): %s", watch.source, exc)
        return None
    except SourceError as exc:
        log.debug("o2g %s: server status not read (again in the next interval): %s", watch.source, exc)
        return None
    return parse_status(body)


async def check_status(
    client: O2GClient, watch: StatusWatch, continuity: Continuity, liveness: Liveness | None = None
) -> str | None:
    """Read the status and act on a change (rules 1-2); the reason when O2G restarted or switched."""
    since = watch.seen_at
    status = await read_status(client, watch)
    if status is None:
        return None
    if liveness is not None:
        liveness.alive()
    reason = watch.changed(status, client.session.server if client.session else "")
    if reason is not None:
        continuity.restarted(reason, since)
    return reason


async def watch_status(
    client: O2GClient,
    watch: StatusWatch,
    continuity: Continuity,
    interval: float,
    liveness: Liveness | None = None,
) -> None:
    """Read the status every ``interval`` seconds until the server changes (rule 2).

    Raises:
        ServerChanged: O2G restarted or switched over: the session is over.
        SessionExpired: the session is gone.
    """
    while watch.enabled:
        await anyio.sleep(interval)
        reason = await check_status(client, watch, continuity, liveness)
        if reason is not None:
            raise ServerChanged(f"o2g {watch.source}: {reason}")
    await anyio.sleep_forever()


async def watch_liveness(source: str, liveness: Liveness, idle_timeout: float, watch: StatusWatch) -> None:
    """Raise :class:`Silent` once nothing was heard for ``idle_timeout`` seconds (rule 4); without
    a status watch a quiet night would look silent: then nothing."""
    while True:
        if not watch.enabled:
            await anyio.sleep_forever()
        silent = liveness.silent_for()
        if silent >= idle_timeout:
            raise Silent(f"o2g {source}: no webhook POST and no server status answer for {silent:.1f}s")
        await anyio.sleep(idle_timeout - silent)
