"""O2G's server status watch (issue 17 item 4): restarts, HA switchovers, webhook liveness.

Rules:

1. ``GET {base}/system/status`` (004 L8810-8838, L9088-9105; an administrator session) is read
   when a session starts and every ``status_interval`` seconds during it, by the ``status`` job
   nested in the session (:class:`StatusReads`, a :class:`~streamd.sources.poller.PollSpec`: the
   generic poll loop under :func:`streamd.runtime.run_job`; the session waits for its first read).
   Its ``startDate`` and, on an HA pair, its ``primary`` are remembered across sessions
   (:class:`StatusWatch`, one per source), per configured server (``url``, ``secondary_url``).
2. A ``startDate`` that changed means O2G restarted; a ``primary`` that changed means an HA
   switchover. Either is logged (a warning) and named as the reason of the continuity loss
   (:meth:`~streamd.sources.o2g.continuity.Continuity.restarted`): the Gap before the next
   snapshot says so. Seen during a session (not by its first read: the session subscribes and
   snapshots anyway), it ends the session (:class:`ServerChanged`, transient): the supervisor
   opens a new one, which subscribes and snapshots again.
3. A read refused for good (:func:`refused_for_good`: ``NOT_ALLOWED``, not an administrator,
   ``NOT_SUPPORTED``, an error O2G marks ``canRetry: false``) turns the watch off for the source,
   with one line, and the job asks for no further cycle. Any other failed read (Tomcat's bare 404
   while O2G redeploys after a restart included) ends the status job (:func:`status_decision`):
   the supervisor reads again one ``status_interval`` later (a server-given delay is kept), and
   meanwhile the source shows ``retrying`` with the read's reason (a nested job reports through
   its session's health). A changed server or a lost session ends the session as usual. Nothing
   here loops past a failure.
4. Liveness (webhook mode, :class:`Liveness`): every webhook POST and every status answer is a
   sign of life; none for ``idle_timeout`` seconds ends the session with a :class:`Silent`
   (transient: the source goes ``retrying``).
5. :func:`parse_status` is pure: a body that is not an object, or fields of the wrong type, give
   ``None`` for what cannot be read (tolerant reading: an absent ``startDate`` detects nothing,
   and the watch keeps its last known value until one is given again).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import anyio

from streamd.errors import FatalError, TransientError
from streamd.events import Event, utcnow
from streamd.retry import Decision, Fatal, Retry, classify
from streamd.sources.base import Emit
from streamd.sources.continuity import Continuity
from streamd.sources.o2g.client import O2GClient
from streamd.sources.o2g.protocol import O2GRequestError, SessionExpired
from streamd.sources.poller import PollResult

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

    def push(self, events: Sequence[Event]) -> Coroutine[Any, Any, None]:
        self.liveness.alive()
        return self.emit.push(events)  # not awaited here: see Emit.push


def refused_for_good(exc: FatalError) -> bool:
    """The status read is refused for good (rule 3): NOT_ALLOWED, a refused login, NOT_SUPPORTED,
    an answer O2G marks ``canRetry: false``; not a bare 404 (Tomcat's, while O2G redeploys)."""
    return not isinstance(exc, O2GRequestError) or exc.final


async def read_status(client: O2GClient, watch: StatusWatch) -> ServerStatus | None:
    """One status read (rule 3): None when the watch is off or was turned off by this read.

    Raises:
        SessionExpired: the session is gone.
        SourceError: the read failed, not for good (the status job's failure).
    """
    if not watch.enabled:
        return None
    try:
        body = await client.get_json("/system/status", "system status")
    except SessionExpired:
        raise
    except FatalError as exc:
        if not refused_for_good(exc):
            raise
        watch.disable(str(exc))
        return None
    return parse_status(body)


async def check_status(
    client: O2GClient, watch: StatusWatch, continuity: Continuity, liveness: Liveness | None = None
) -> str | None:
    """Read the status and act on a change (rules 1-2); the reason when O2G restarted or switched.

    Raises:
        SessionExpired | SourceError: as :func:`read_status`.
    """
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


class StatusReads:
    """The status read as a :class:`~streamd.sources.poller.PollSpec` (rules 1-3): one read a cycle.

    One per source; :meth:`begin` hands it each new session's client.
    """

    name = "status"

    def __init__(self, watch: StatusWatch, continuity: Continuity, liveness: Liveness | None) -> None:
        self.watch, self.continuity, self.liveness = watch, continuity, liveness
        self.client: O2GClient | None = None
        self.fresh = True  # the next read is the session's first (rule 2)

    def begin(self, client: O2GClient) -> None:
        """A new session: read with its client; its first read ends nothing."""
        self.client, self.fresh = client, True

    def load_cursor(self, saved: str | None) -> None:
        """No cursor: each read stands alone."""

    def dump_cursor(self, cursor: None) -> str | None:
        """Nothing to persist."""
        return None

    async def fetch(self, cursor: None) -> PollResult[None]:
        """One read; no further cycle once the watch is off (rule 3).

        Raises:
            ServerChanged: O2G restarted or switched over since the session's first read.
            SessionExpired | SourceError: as :func:`read_status`.
        """
        assert self.client is not None, "begin() before the first read"
        first, self.fresh = self.fresh, False
        reason = await check_status(self.client, self.watch, self.continuity, self.liveness)
        if reason is not None and not first:
            raise ServerChanged(f"o2g {self.watch.source}: {reason}")
        return PollResult((), None, next_in=None if self.watch.enabled else math.inf)


def status_decision(exc: BaseException) -> Decision:
    """What the status job does about a failure (rule 3): a changed server or a lost session is the
    session's (:class:`~streamd.retry.Fatal`: raised to it); a failed read is read again."""
    if isinstance(exc, ServerChanged | SessionExpired):
        return Fatal()
    decision = classify(exc)
    return Retry() if isinstance(decision, Fatal) else decision


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
