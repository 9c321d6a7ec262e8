"""Bounds on streamd's one HTTP port: connections, request heads, request bodies.

uvicorn bounds none of these by itself (no header read timeout; ``limit_concurrency`` answers 503
only once a request head was read, so idle connections are never refused). streamd serves with
its own protocol class (:func:`protocol`) that adds the missing bounds: uvicorn's httptools
protocol when httptools is installed (a dependency: ~70 us less CPU per request than h11), else
its h11 one (``parser="h11"`` chooses it); both keep every rule below
(:mod:`streamd.http.httptools_limits` says how the httptools one counts a request head).

Rules:

1. At most ``max_connections`` connections are open at once (websockets included). One more is
   answered ``503`` with ``Connection: close`` as soon as it is accepted, before its request is
   read, and closed. Each refusal is counted (``streamd_errors_total{source="http",
   stage="http",error_type="too_many_connections"}``); one warning when refusing starts and one
   info line once the open connections are back below 90 % of the limit (no line per refusal).
2. A request head (request line and headers) must be complete within ``header_timeout`` of the
   connection being accepted, or of the first byte of a further request on a kept-alive
   connection: else the connection is closed without an answer and counted (``header_timeout``).
   This is what closes idle and trickling (slow-loris) connections; an idle kept-alive connection
   between requests is closed by uvicorn's ``timeout_keep_alive``.
3. A head larger than ``max_header_bytes`` is answered 431 and the connection closed, counted
   (``header_too_large``); h11's ``max_incomplete_event_size`` (the same bound) keeps it from
   buffering more of an unfinished one.
4. A request carrying both Content-Length and Transfer-Encoding is read by its Transfer-Encoding
   (h11 does so; llhttp is told to), answered with ``Connection: close``, and the connection is
   closed after the answer (RFC 9112 §6.1: the two framings may disagree, the root of request
   smuggling). The application sees the added ``connection: close`` request header.
5. Bodies: a route that reads one uses :func:`read_body` with its own cap. A declared
   Content-Length above the cap is refused before anything is read; a body growing beyond it while
   being read is refused at that point (:class:`BodyTooLarge`, the route answers 413). uvicorn
   buffers at most 64 KiB of a body the application is not reading, and reads and discards what
   a finished response left unread, so a body is never held whole. A slow body is bounded by
   ``max_connections`` only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass
from importlib.util import find_spec
from typing import Any, ClassVar, Literal, cast

import h11
from starlette.requests import Request
from uvicorn.protocols.http.flow_control import CLOSE_HEADER
from uvicorn.protocols.http.h11_impl import H11Protocol

from streamd.config_core import HttpConfig
from streamd.telemetry import count_error

log = logging.getLogger("streamd.http")

REFUSED = (
    b"HTTP/1.1 503 Service Unavailable\r\n"
    b"content-type: text/plain; charset=utf-8\r\n"
    b"connection: close\r\n"
    b"content-length: 21\r\n"
    b"\r\n"
    b"too many connections\n"
)
"""What a connection beyond ``max_connections`` gets before it is closed."""

TOO_LARGE = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
    b"content-type: text/plain; charset=utf-8\r\n"
    b"connection: close\r\n"
    b"content-length: 26\r\n"
    b"\r\n"
    b"request head is too large\n"
)
"""The answer to a request head beyond ``max_header_bytes``."""

HEAD_END = re.compile(rb"\n\r?\n")
"""A request head ends at a blank line, CRLF or bare LF (h11 and llhttp alike)."""


@dataclass(frozen=True, slots=True)
class Limits:
    """The bounds of one server (from :class:`~streamd.config_core.HttpConfig`)."""

    max_connections: int
    header_timeout: float
    max_header_bytes: int

    @classmethod
    def of(cls, http: HttpConfig | None = None) -> Limits:
        """The limits ``http`` configures (the config defaults without one)."""
        http = http or HttpConfig()
        return cls(http.max_connections, http.header_timeout, http.max_header_bytes)


class BodyTooLarge(Exception):
    """A request body above the route's cap (answer 413)."""

    def __init__(self, limit: int, declared: int | None = None) -> None:
        self.limit, self.declared = limit, declared
        told = f"Content-Length {declared}" if declared is not None else "the body"
        super().__init__(f"{told} exceeds the limit of {limit} bytes")


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused as soon as it is known to exceed ``limit`` bytes (rule 5).

    Raises:
        BodyTooLarge: the declared Content-Length, or what was read so far, exceeds ``limit``.
    """
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(limit, int(declared))
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        if chunk:
            size += len(chunk)
            if size > limit:
                raise BodyTooLarge(limit)
            chunks.append(chunk)
    return b"".join(chunks)  # one chunk (the usual webhook body) is returned as it is, not copied


@dataclass(slots=True)
class Refusing:
    """Whether a server is refusing connections (for one log line per transition)."""

    on: bool = False


Parser = Literal["auto", "h11", "httptools"]
"""Which HTTP/1.1 parser serves: ``auto`` is httptools when it is installed, else h11."""

HTTPTOOLS = find_spec("httptools") is not None
"""Whether uvicorn's httptools protocol can be used."""


def protocol(limits: Limits, parser: Parser = "auto") -> type[asyncio.Protocol]:
    """uvicorn's HTTP/1.1 protocol bounded by ``limits`` (pass as ``uvicorn.Config(http=...)``).

    Raises:
        ValueError: ``parser="httptools"`` where httptools is not installed.
    """
    if parser == "httptools" or (parser == "auto" and HTTPTOOLS):
        if not HTTPTOOLS:
            raise ValueError("parser httptools: httptools is not installed (pip install httptools)")
        from streamd.http.httptools_limits import BoundedHttpTools

        class BoundedFast(BoundedHttpTools):
            _limits = limits
            _refusing = Refusing()

        return BoundedFast

    class Bounded(_BoundedH11):
        _limits = limits
        _refusing = Refusing()

    return Bounded


def admitted(protocol: Any, transport: asyncio.Transport, limits: Limits, refusing: Refusing) -> bool:
    """Rule 1 for a protocol whose ``connection_made`` just added it to ``protocol.connections``:
    True when it may stay; else it is refused (503, closed, counted, logged by transition)."""
    connections: set[Any] = protocol.connections
    limit = limits.max_connections
    if len(connections) > limit:
        connections.discard(protocol)  # refused: not counted against the next ones
        count_error("http", "http", "too_many_connections")
        if not refusing.on:
            refusing.on = True
            log.warning("http: %d connections open (http.max_connections): refusing new ones", limit)
        transport.write(REFUSED)
        transport.close()
        return False
    if refusing.on and len(connections) <= max(1, limit * 9 // 10):
        refusing.on = False
        log.info("http: %d connections open: accepting new ones again", len(connections))
    return True


def is_smuggling_risk(headers: list[tuple[bytes, bytes]]) -> bool:
    """Whether a request head carries both Content-Length and Transfer-Encoding (rule 4)."""
    names = {name for name, _ in headers}
    return b"content-length" in names and b"transfer-encoding" in names


class HeadTimed(ABC):
    """What both bounded protocols share, mixed in before uvicorn's protocol class: rule 1 when a
    connection is made, and the head timer of rule 2 (armed by :meth:`_arm` while a head is being
    received and :meth:`_may_arm` allows it; disarmed when the connection is lost). A protocol
    says what the timer does when it fires (:meth:`_head_timeout`)."""

    _limits: ClassVar[Limits]
    _refusing: ClassVar[Refusing]
    _head_timer: asyncio.TimerHandle | None = None
    loop: asyncio.AbstractEventLoop

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Accept (arming the head timer) or refuse with 503 past ``max_connections``."""
        super().connection_made(transport)  # type: ignore[misc]  # uvicorn's protocol, after this
        if admitted(self, cast(asyncio.Transport, transport), self._limits, self._refusing):
            self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        """Disarm the head timer; then uvicorn's handling."""
        self._disarm()
        super().connection_lost(exc)  # type: ignore[misc]

    def _may_arm(self) -> bool:
        return True

    def _arm(self) -> None:
        if self._head_timer is None and self._may_arm():
            self._head_timer = self.loop.call_later(self._limits.header_timeout, self._head_timeout)

    def _disarm(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    @abstractmethod
    def _head_timeout(self) -> None:
        """The head timer fired: close the connection if a head is still being received."""


class _BoundedH11(HeadTimed, H11Protocol):
    """uvicorn's h11 protocol plus rules 1 to 4."""

    def handle_events(self) -> None:
        """uvicorn's event loop over h11, then: close after a CL+TE request; (dis)arm the head timer."""
        if self.conn.their_state is h11.IDLE and self._head_too_large():
            count_error("http", "http", "header_too_large")
            self._disarm()
            self.transport.write(TOO_LARGE)
            self.transport.close()
            return
        before = self.cycle
        super().handle_events()
        if self.cycle is not None and self.cycle is not before and is_smuggling_risk(self.headers):
            self.headers.append(CLOSE_HEADER)  # uvicorn echoes it: h11 closes after the answer
            self.cycle.keep_alive = False
        if self.conn.their_state is h11.IDLE:
            if self.conn.trailing_data[0]:  # part of a further request head has arrived
                self._arm()
        else:
            self._disarm()  # a head was read (or the connection failed, or was upgraded)

    def _head_too_large(self) -> bool:
        buffered = self.conn.trailing_data[0]
        if len(buffered) <= self._limits.max_header_bytes:
            return False
        end = HEAD_END.search(buffered)
        return end is None or end.end() > self._limits.max_header_bytes

    def _head_timeout(self) -> None:
        self._head_timer = None
        if self.transport.is_closing() or self.conn.their_state is not h11.IDLE:
            return
        count_error("http", "http", "header_timeout")
        with contextlib.suppress(h11.LocalProtocolError):
            self.conn.send(h11.ConnectionClosed())
        self.transport.close()
