"""What every simulator shares: one fault script and one request log.

Rules:

1. A simulator is split along three seams: ``world`` (the vendor's state and the traffic that
   changes it, no HTTP), ``app`` (the routes that answer from the world, as the guide documents
   them) and ``faults`` (what a test scripts to go wrong). The last two use this module, so every
   simulator scripts faults and logs requests the same way.
2. :class:`FaultScript` holds :class:`Fault` answers under a *where* key (an endpoint name, a
   query name, a path...). A request asks :meth:`FaultScript.take` with its candidate keys, most
   specific first; the first rule that matches answers it and uses up one of its ``times``
   (``times=None``: an outage, until :meth:`FaultScript.clear`). How a rule's key matches a
   request's key is the simulator's choice (exact by default, ``contains`` for path fragments).
3. :class:`RequestLog` is ASGI middleware that appends one :class:`LoggedRequest` per answered
   request (and per websocket accepted or refused) to :attr:`RequestLog.entries`, stamped with
   the simulator's clock, so tests read what a client did in order and with the answer it got.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from urllib.parse import parse_qsl

import anyio
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send


@dataclass(frozen=True, slots=True)
class Fault:
    """One scripted answer: a status, an optional body and headers, an optional delay first."""

    status: int = 503
    body: bytes | None = None
    media_type: str = "application/json"
    headers: Mapping[str, str] = field(default_factory=dict)
    delay: float = 0.0
    """Seconds to wait before answering (a slow vendor)."""

    async def respond(self) -> Response:
        """The answer (after :attr:`delay`); without a body, a short text naming the status."""
        if self.delay:
            await anyio.sleep(self.delay)
        if self.body is None:
            return Response(f"simulated HTTP {self.status}", self.status, dict(self.headers), "text/plain")
        return Response(self.body, self.status, dict(self.headers), self.media_type)


def exact(rule: str, key: str) -> bool:
    """A rule keyed ``rule`` answers requests keyed exactly ``key``."""
    return rule == key


def contains(rule: str, key: str) -> bool:
    """A rule keyed ``rule`` answers requests whose key contains it (a path fragment)."""
    return rule in key


@dataclass(slots=True)
class _Rule:
    where: str
    fault: Fault
    times: int | None


class FaultScript:
    """Scripted faults, taken by the requests they match, in the order they were added."""

    def __init__(self, match: Callable[[str, str], bool] = exact) -> None:
        self._match = match
        self._rules: list[_Rule] = []

    def add(self, where: str, fault: Fault, *, times: int | None = 1) -> None:
        """Answer the next ``times`` requests matching ``where`` with ``fault`` (None: until cleared)."""
        if times is not None and times < 1:
            raise ValueError(f"times must be at least 1 (or None for an outage), got {times}")
        self._rules.append(_Rule(where, fault, times))

    def clear(self, where: str | None = None) -> None:
        """Forget the rules keyed ``where`` (every rule without it)."""
        self._rules = [r for r in self._rules if where is not None and r.where != where]

    def pending(self, where: str | None = None) -> int:
        """How many scripted rules (keyed ``where``, or all) are still waiting."""
        return sum(1 for r in self._rules if where is None or r.where == where)

    def take(self, *keys: str) -> Fault | None:
        """The fault for a request known by ``keys`` (most specific first), using one of its times.

        Rules:
            1. Keys are tried in order; for each, the oldest matching rule wins.
            2. A rule with ``times=None`` (an outage) is never used up.
        """
        for key in keys:
            for rule in self._rules:
                if self._match(rule.where, key):
                    if rule.times is not None:
                        rule.times -= 1
                        if rule.times == 0:
                            self._rules.remove(rule)
                    return rule.fault
        return None


@dataclass(frozen=True, slots=True)
class LoggedRequest:
    """One request a simulator answered (``method`` is ``WS`` for a websocket upgrade)."""

    at: float
    method: str
    path: str
    query: str
    status: int
    headers: Mapping[str, str] = field(default_factory=dict)

    @property
    def params(self) -> dict[str, str]:
        """The query string's parameters (the last value of a repeated one)."""
        return dict(parse_qsl(self.query, keep_blank_values=True))

    @property
    def websocket(self) -> bool:
        """Whether this was a websocket upgrade."""
        return self.method == "WS"


class RequestLog:
    """ASGI middleware logging every answered request of the app it wraps."""

    def __init__(self, app: ASGIApp, clock: Callable[[], float] = time.monotonic) -> None:
        self.app, self.clock = app, clock
        self.entries: list[LoggedRequest] = []

    def to(self, path_part: str, method: str | None = None) -> list[LoggedRequest]:
        """Logged requests whose path contains ``path_part`` (and of ``method``, if given)."""
        return [r for r in self.entries if path_part in r.path and (method is None or r.method == method)]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        logged = False

        def record(status: int) -> None:
            nonlocal logged
            logged = True
            headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope.get("headers", ())}
            method = "WS" if kind == "websocket" else str(scope["method"])
            query = scope.get("query_string", b"").decode("latin-1")
            self.entries.append(LoggedRequest(self.clock(), method, scope["path"], query, status, headers))

        async def logging_send(message: Message) -> None:
            if not logged:
                if message["type"] == "http.response.start":
                    record(int(message["status"]))
                elif message["type"] == "websocket.accept":
                    record(101)
                elif message["type"] in ("websocket.close", "websocket.http.response.start"):
                    record(int(message.get("status", 403)))
            await send(message)

        await self.app(scope, receive, logging_send)
