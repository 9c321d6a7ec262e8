"""Realtime values over the websocket subscription (seed 000 L955-996, printed under "5.0").

Rules:

1. One session = REST baseline + one subscription: every (re)connect first polls the values once
   (the socket sends no snapshot and no "initializing" notice; spec §3.5), publishes that as a
   snapshot, then subscribes to ``/rest/api/v1/realtime-metric-subscription?id=A&id=B&auth_token=KEY``
   (repeated ``id``). It calls ``connected()`` (readiness, backoff reset) once the socket proved
   healthy: a first message, or ``min(ping_interval, 5s)`` without failing, so a server that
   accepts and immediately closes gets a growing backoff, not a tight reconnect loop.
2. Liveness is websocket ping/pong: the client pings every ``ping_interval`` and the connection
   fails when a pong is ``ping_timeout`` late. A close, a missed pong or any socket error ends the
   session with ``TransientError``; the supervisor reconnects with backoff and resubscribes.
3. While keys are still initializing, the REST values are re-polled every ``initializing_retry``;
   every ``refresh_every`` the REST values are re-polled for a full snapshot (values that went
   missing on the socket come back, category values no longer listed are dropped: :mod:`.state`
   rule 5); when that re-poll fails the snapshot is published from the values held, and the
   socket stays up. When the metric list changes the socket is re-opened with the new ids.
   Every REST poll of this mode is merged by the value's own ``lastUpdateTime`` (newest wins,
   :mod:`.state` rule 4): a REST answer computed before a socket message never undoes it.
4. A handshake answered 401/403 is an ``AuthError`` (naming the ids for 403); any other refusal
   (404, 400, 405, 426, 501, a non-websocket answer) is :class:`WebsocketUnavailable`, which the
   source turns into a fall-back to polling when ``websocket_fallback`` is on. ``wss://`` is
   verified like every vendor client (``verify_tls``, ``ca_file``); a certificate that does not
   verify is a :class:`~streamd.sources.http.CertificateError` (fatal), not a reconnect loop.
5. This module is the only Xima module that sees the ``websockets`` library. Socket
   messages are pushed with ``emit.push`` (a push source cannot replay); REST baselines use
   ``await emit(...)``. A message already received is still pushed when the session is stopped
   (shielded, at most ``STOP_GRACE`` seconds: :class:`StopGrace`); its values are already applied. The URL carries the key, so it never appears in a log line or error.
6. Continuity (issue 17, :class:`~streamd.sources.continuity.Continuity`,
   shared by every session of the source): once a socket proved healthy the stream is complete;
   a session that ends with an error (a close, a missed pong, a refused reconnect) records the
   loss with when it happened. The next REST baseline publishes one ``streamd.source.Gap`` on
   ``{prefix}source-status`` (``from`` the loss ``to`` now) before its snapshot, the loss cleared
   once that emit returned (one that raised leaves it for the next baseline); a fall-back to
   polling publishes it before the first poll (:mod:`.source`). A resubscribe in place (the metric
   list changed) and a stop are no loss.
"""

from __future__ import annotations

import logging
import math
import ssl
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

import anyio
import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI

from streamd.errors import (
    AuthError,
    BackOff,
    FatalError,
    NormalizationError,
    TransientError,
    VendorProtocolError,
)
from streamd.events import Event
from streamd.jsonwire import loads
from streamd.runtime import EXPECTED, task_group
from streamd.sources.base import Emit
from streamd.sources.continuity import Continuity
from streamd.sources.http import CertificateError
from streamd.sources.xima.auth import websocket_query
from streamd.sources.xima.client import SUBSCRIPTION_PATH
from streamd.sources.xima.metric_events import dead_letters
from streamd.sources.xima.normalize import parse_entry
from streamd.sources.xima.realtime import RealtimeCore, count_dead, count_deviations
from streamd.telemetry import count_error

log = logging.getLogger("streamd.sources.xima")


class WebsocketUnavailable(FatalError):
    """The server refused the subscription endpoint itself (not the credentials)."""


class _Resubscribe(Exception):
    """The active metric ids changed: open a new socket with the new list."""


STOP_GRACE = 1.0
"""Seconds a stop waits for the push of a message already received (its values are applied)."""


class StopGrace:
    """Lets a push under way outlive the cancellation of its task group, for ``grace`` seconds.

    :meth:`watch` runs in the same task group and so learns of any cancellation of it (a stop, a
    resubscribe, a failed sibling); :meth:`push` is shielded and bounded only from that moment on,
    so backpressure in normal operation still blocks as long as it must.
    """

    def __init__(self, grace: float) -> None:
        self.grace = grace
        self.deadline = math.inf
        self._scopes: set[anyio.CancelScope] = set()

    async def watch(self) -> None:
        """Wait for the cancellation, then start the grace period of every push under way."""
        try:
            await anyio.sleep_forever()
        finally:
            self.deadline = anyio.current_time() + self.grace
            for scope in self._scopes:
                scope.deadline = min(scope.deadline, self.deadline)

    async def push(self, emit: Emit, events: list[Event]) -> bool:
        """``emit.push(events)``, shielded; False when the grace ran out before it returned."""
        with anyio.CancelScope(shield=True, deadline=self.deadline) as scope:
            self._scopes.add(scope)
            try:
                await emit.push(events)
            finally:
                self._scopes.discard(scope)
        return not scope.cancelled_caught


@asynccontextmanager
async def open_subscription(
    url: str,
    ids: list[str],
    *,
    ping_interval: float,
    ping_timeout: float,
    open_timeout: float,
    verify: ssl.SSLContext | bool = True,
) -> AsyncIterator[ClientConnection]:
    """Open the subscription socket, translating every ``websockets`` error (the adapter boundary).

    Args:
        verify: what :func:`~streamd.sources.http.tls_verify` gave (used for ``wss://`` only).

    Raises:
        AuthError: handshake refused with 401, or 403 (naming the ids).
        CertificateError: the server's certificate did not verify.
        WebsocketUnavailable: any other refusal of the endpoint.
        TransientError: connection errors, closes, missed pongs, 5xx.
    """
    what = f"websocket subscription for metrics {', '.join(ids)}"
    context = ssl_context(verify) if url.startswith("wss://") else None
    try:
        async with connect(
            url,
            ssl=context,
            ping_interval=ping_interval,
            ping_timeout=ping_timeout,
            open_timeout=open_timeout,
            close_timeout=min(1.0, ping_timeout),
            max_size=2**20,
        ) as ws:
            yield ws
    except InvalidStatus as exc:
        status = exc.response.status_code
        if status == 401:
            raise AuthError(f"{what}: HTTP 401, the authentication key was rejected") from None
        if status == 403:
            raise AuthError(f"{what}: HTTP 403, a metric does not exist or is not assigned") from None
        if status == 429:
            raise BackOff(f"{what}: HTTP 429", 5.0) from None
        if status == 408 or status >= 500:
            raise TransientError(f"{what}: HTTP {status}") from None
        raise WebsocketUnavailable(f"{what}: endpoint refused with HTTP {status}") from None
    except InvalidURI:
        raise FatalError(f"{what}: invalid websocket URL") from None
    except InvalidHandshake as exc:
        raise WebsocketUnavailable(f"{what}: not a websocket endpoint ({type(exc).__name__})") from None
    except ConnectionClosed as exc:
        raise TransientError(f"{what}: closed ({exc.rcvd.code if exc.rcvd else 'no close frame'})") from None
    except ssl.SSLCertVerificationError as exc:
        raise CertificateError(f"{what}: TLS certificate not trusted: {exc.verify_message or exc}") from None
    except (OSError, TimeoutError) as exc:
        raise TransientError(f"{what}: {type(exc).__name__}: {exc}") from None


def ssl_context(verify: ssl.SSLContext | bool) -> ssl.SSLContext:
    """The ``ssl`` context for ``wss://`` from httpx's ``verify=`` value (True: the system store)."""
    if isinstance(verify, ssl.SSLContext):
        return verify
    context = ssl.create_default_context()
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


async def receive(ws: ClientConnection, source: str) -> str | bytes:
    """The next message; any close (clean, error, missed pong) becomes ``TransientError``."""
    try:
        return await ws.recv()
    except ConnectionClosed as exc:
        code = exc.rcvd.code if exc.rcvd else None
        missed_pong = exc.rcvd is None and exc.sent is not None and exc.sent.code == 1011
        reason = "keepalive ping timeout" if missed_pong else f"close code {code}"
        raise TransientError(f"xima {source}: websocket closed ({reason})") from None


@dataclass(slots=True)
class RealtimeWebsocket:
    """The websocket-mode realtime session (one supervised session per call)."""

    core: RealtimeCore
    url_root: str
    verify: ssl.SSLContext | bool = True
    continuity: Continuity | None = None
    """The source's continuity across sessions (rule 6)."""

    async def session(self, emit: Emit, connected: Callable[[], None]) -> None:
        """Baseline, subscribe, stream until the socket fails; resubscribe in place when ids change."""
        self.core.restart()
        try:
            while True:
                ids = await self._baseline(emit)
                if not ids:
                    connected()
                    await anyio.sleep(self.core.cfg.metrics_refresh)
                    continue
                try:
                    await self._subscribe(emit, connected, ids)
                except _Resubscribe:
                    log.info("xima %s: metric list changed; resubscribing", self.core.source)
        except Exception as exc:  # recorded, not handled: the supervisor decides (rule 6)
            if self.continuity is not None:
                self.continuity.lost(f"websocket session ended: {exc}")
            raise

    async def _baseline(self, emit: Emit) -> list[str]:
        events = await self.core.prepare()
        events += await self.core.poll(snapshot=self.core.take_refresh(), monotonic=True)
        gap = self.continuity.gap() if self.continuity is not None else None
        if gap is not None:  # before the snapshot: consumers rebuild their state from it (rule 6)
            log.warning("xima %s: events may be missing: %s", self.core.source, gap.data.reason)
            events.insert(0, gap)
        if events:
            await emit(events)
        if gap is not None and self.continuity is not None:
            self.continuity.gap_sent(gap)  # durable: else the next baseline gets it again
        return self.core.active_ids()

    async def _subscribe(self, emit: Emit, connected: Callable[[], None], ids: list[str]) -> None:
        cfg = self.core.cfg
        url = f"{self.url_root}{SUBSCRIPTION_PATH}?{websocket_query(ids, cfg.api_key)}"
        async with (
            open_subscription(
                url,
                ids,
                ping_interval=cfg.ping_interval,
                ping_timeout=cfg.ping_timeout,
                open_timeout=cfg.timeout,
                verify=self.verify,
            ) as ws,
            task_group((*EXPECTED, _Resubscribe)) as tg,  # the first to fail ends the others
        ):
            healthy = anyio.Event()
            grace = StopGrace(STOP_GRACE)
            tg.start_soon(grace.watch)
            tg.start_soon(self._housekeeping, emit, ids)
            tg.start_soon(self._read, ws, emit, healthy, grace)
            with anyio.move_on_after(min(cfg.ping_interval, 5.0)):
                await healthy.wait()
            if self.continuity is not None:
                self.continuity.streaming()
            connected()
        raise TransientError(f"xima {self.core.source}: websocket ended")  # pragma: no cover - never returns

    async def _read(self, ws: ClientConnection, emit: Emit, healthy: anyio.Event, grace: StopGrace) -> None:
        while True:
            message = await receive(ws, self.core.source)
            healthy.set()
            events = self.on_message(message)
            if events and not await grace.push(emit, events):
                count_error(self.core.source, "websocket", "stop_grace", len(events))
                log.warning(
                    "xima %s: a received message was not pushed within %.1fs of the stop",
                    self.core.source,
                    grace.grace,
                )

    def on_message(self, message: str | bytes) -> list[Event]:
        """Normalize one ``{key, value}`` socket message into events.

        A deviating message is published with its deviations; only a message that is not JSON or
        cannot be routed (no usable key) is a dead letter, with its raw text.
        """
        now_ms = self.core.now_ms()
        try:
            entry = parse_entry(loads(message), now_ms=now_ms)
        except orjson.JSONDecodeError:
            events = dead_letters(self.core.source, [(NormalizationError("message is not JSON"), message)])
        except NormalizationError as exc:
            events = dead_letters(self.core.source, [(exc, message)])
        else:
            events = self.core.state.apply([entry], now_ms=now_ms, monotonic=True)
        count_dead(self.core.source, events)
        count_deviations(self.core.source, events)
        return events

    async def _housekeeping(self, emit: Emit, ids: list[str]) -> None:
        core = self.core
        idle = min(1.0, core.cfg.metrics_refresh, core.cfg.refresh_every)
        while True:
            await anyio.sleep(core.cfg.initializing_retry if core.state.initializing else idle)
            events = await core.prepare()
            if core.active_ids() != ids:
                raise _Resubscribe
            if core.state.initializing:
                events += await core.poll(snapshot=False, monotonic=True)
            if core.take_refresh():
                events += await self._refresh()
            if events:
                await emit(events)

    async def _refresh(self) -> list[Event]:
        """The periodic full snapshot: a REST re-poll, else the values held (rule 3)."""
        core = self.core
        try:
            return await core.poll(snapshot=True, monotonic=True)
        except (TransientError, BackOff, VendorProtocolError) as exc:  # the socket is fine: keep it
            count_error(core.source, "request", "refresh")
            log.info("xima %s: refresh re-poll failed (%s); snapshot from the values held", core.source, exc)
            return core.state.refresh(now_ms=core.now_ms())
