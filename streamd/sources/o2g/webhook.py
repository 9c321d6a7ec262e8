"""The O2G webhook receiver: ``POST /webhooks/o2g/{source}`` on streamd's HTTP port.

Rules:

1. Only ``POST`` (405 otherwise). With a shared secret configured, the request must carry it
   as the ``secret`` query parameter (streamd puts it in the ``webHookUrl`` it subscribes with,
   since O2G sends no custom header) or as the ``X-Streamd-Secret`` header: else 401.
2. The request must carry a live subscription id in its Cookie header: the header's whole value
   (004 L2126: "as Cookie header the subscriptionId") or the value of any cookie in it,
   URL-decoded or not. The seed's example POST carries the *session's* ``AlcUserId%3D<JWT>``
   instead (004 L2254), so the live session's ``AlcUserId`` is accepted too: both are secrets
   only O2G and streamd know. O2G may POST as soon as a subscription exists, before its answer
   gave streamd the id: while a subscription is being created (:meth:`WebhookReceiver.subscribing`)
   a POST with an unknown cookie waits for the answer (``deadline`` seconds at most) and is then
   checked again. Anything else: 403.
3. Only then is the body read, and at most ``max_event_size`` x :data:`BATCH_FACTOR` bytes of it
   (O2G posts one event per request): a larger declared Content-Length is answered 413 before
   anything is read, a larger body (chunked) as soon as it has grown beyond the cap; counted
   (``body_too_large``), never held whole (:func:`streamd.http.limits.read_body`).
4. An unparseable body answers 400, after the body was put on the dead-letter topic (the same
   body would fail again); when the dead letter is not durable (rule 5's cases) it is answered
   503 instead, so O2G resends it and its dead letter is made with it, and the log line says so.
5. 2xx only once the events are durable (``await emit(events)``: Kafka ack or spool), within
   ``deadline`` seconds; past it, when Kafka and the spool refuse (``PublishError``) or when the
   emitter is already closed (a POST during shutdown): 503, counted and no traceback, so O2G
   retries. Keepalives answer 200 at once.
6. One line per transition, not per POST: a warning when POSTs start being refused for a missed
   deadline or the shutdown, an info line when one is accepted again. A refusal by Kafka and the
   spool (spool full) is the pipeline's to log (once when the spool starts refusing, once when it
   has room again), so it is only a debug line here.
7. With several replicas (:mod:`streamd.cluster.webhooks`) the digests of :meth:`WebhookReceiver.credentials`
   are advertised, and a POST may reach this receiver forwarded by the replica O2G sent it to; it is
   handled like any other (the 2xx then travels back through that replica).
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import unquote

import anyio
import orjson
from starlette.requests import Request
from starlette.responses import Response

from streamd.errors import VendorProtocolError
from streamd.http.limits import BodyTooLarge, read_body
from streamd.jsonwire import loads
from streamd.sources.base import Emit
from streamd.sources.durable import Durability
from streamd.sources.o2g.chunk import React, dead_letter, to_events
from streamd.sources.o2g.protocol import MalformedEvent, O2GEventDecoder
from streamd.telemetry import count_error

log = logging.getLogger("streamd.sources.o2g")

SECRET_HEADER = "X-Streamd-Secret"
SECRET_PARAM = "secret"
BATCH_FACTOR = 4
"""A webhook body may hold this many events of ``max_event_size`` (rule 3)."""


def cookie_candidates(header: str) -> set[str]:
    """Every string in a Cookie header that may be a subscription id.

    The whole value, each ``name=value`` pair's value and each bare token, each both as sent and
    URL-decoded.
    """
    raw = header.strip()
    found = {raw, unquote(raw)}
    for text in (raw, unquote(raw)):
        for part in text.split(";"):
            part = part.strip()
            if not part:
                continue
            found.add(part)
            if "=" in part:
                value = part.partition("=")[2].strip().strip('"')
                found.update((value, unquote(value)))
    found.discard("")
    return found


class WebhookReceiver:
    """One O2G source's webhook endpoint (:meth:`handle`).

    The source keeps ``subscription_ids`` (live subscriptions) and ``session_tokens`` (the live
    session's ``AlcUserId``) current.
    """

    def __init__(
        self, *, source: str, emit: Emit, deadline: float, max_event_size: int, secret: str | None = None
    ) -> None:
        self.source = source
        self.emit = emit
        self.deadline = deadline
        self.max_event_size = max_event_size
        self.secret = secret
        self.subscription_ids: set[str] = set()
        self.session_tokens: set[str] = set()
        self.react: React | None = None  # what the source does about system events (issue 17)
        self._durability = Durability(  # rule 6: a 2xx only once durable; refusals logged by transition
            source, f"o2g {source}", "webhook POSTs", log, hint=" (O2G resends them)"
        )
        self._subscribing: anyio.Event | None = None  # set once a subscription's id is known (rule 2)
        self._secret_query = b""  # the last query string that carried the right secret

    @contextmanager
    def subscribing(self) -> Iterator[None]:
        """While the block runs (a subscription is created and its id added to
        ``subscription_ids``), POSTs with an unknown cookie wait for it to end (rule 2)."""
        done = self._subscribing = anyio.Event()
        try:
            yield
        finally:
            self._subscribing = None
            done.set()

    def credentials(self) -> frozenset[str]:
        """What a POST's Cookie may carry now (rule 2); the cluster advertises their digests so
        another replica can check a POST before forwarding it here."""
        return frozenset(self.subscription_ids | self.session_tokens)

    @property
    def max_body(self) -> int:
        """The largest body accepted, in bytes (rule 3)."""
        return self.max_event_size * BATCH_FACTOR

    async def handle(self, request: Request) -> Response:
        """Handle one POST from O2G (see the module rules for the answers)."""
        if request.method != "POST":
            return Response(status_code=405, headers={"Allow": "POST"})
        if self.secret is not None and not self._secret_ok(request):
            count_error(self.source, "webhook", "bad_secret")
            return Response("bad or missing secret", status_code=401)
        if not await self._authorised(request.headers.get("cookie", "")):
            count_error(self.source, "webhook", "unknown_subscription")
            return Response("unknown subscription", status_code=403)
        try:
            body = await read_body(request, self.max_body)
        except BodyTooLarge as exc:
            count_error(self.source, "webhook", "body_too_large")
            return Response(f"{exc}\n", status_code=413)
        items = self.parse(body)
        if items is None:
            events = [dead_letter(self.source, "decode", "malformed_json", "bad webhook body", body)]
            refused = await self._durability(
                self.emit, events, self.deadline, "the dead letter of an unparseable body"
            )
            if refused is not None:  # rule 4: O2G resends it, the dead letter with it
                return Response(f"dead letter not accepted: {refused}", status_code=503)
            return Response("unparseable body", status_code=400)
        events = to_events(self.source, items, react=self.react)
        if events and (refused := await self._durability(self.emit, events, self.deadline)) is not None:
            return Response(f"events not accepted: {refused}", status_code=503)  # no internals in the body
        return Response(status_code=200)

    def _secret_ok(self, request: Request) -> bool:
        assert self.secret is not None
        query: bytes = request.scope.get("query_string", b"")
        if query and self._secret_query and hmac.compare_digest(query, self._secret_query):
            return True  # the query string last seen carrying the secret: no parsing (hot path)
        param = request.query_params.get(SECRET_PARAM)
        given = param or request.headers.get(SECRET_HEADER) or ""
        if not hmac.compare_digest(given.encode(), self.secret.encode()):
            return False
        if param:
            self._secret_query = query
        return True

    async def _authorised(self, header: str) -> bool:
        if self._known_subscription(header):
            return True
        pending = self._subscribing
        if pending is None or not header:
            return False
        with anyio.move_on_after(self.deadline):  # O2G was quicker than its own answer (rule 2)
            await pending.wait()
        return self._known_subscription(header)

    def _known_subscription(self, header: str) -> bool:
        if not header:
            return False
        whole = header.strip()  # what O2G sends (004 L2126): no candidates to build
        if whole in self.subscription_ids or whole in self.session_tokens:
            return True
        candidates = cookie_candidates(header)
        return not (
            candidates.isdisjoint(self.subscription_ids) and candidates.isdisjoint(self.session_tokens)
        )

    def parse(self, body: bytes) -> list[dict[str, Any] | MalformedEvent] | None:
        """The events of a POST body, decoded once; None when it is not (only) JSON objects.

        One JSON object (what O2G posts) is one ``loads``; anything else (several objects, NDJSON,
        an array, a malformed or oversized one) goes through the chunk channel's decoder, whose
        framing rules every body follows, with the same result.
        """
        if len(body) <= self.max_event_size:
            try:
                obj = loads(body)  # big integers kept exact, as the decoder does
            except orjson.JSONDecodeError:
                obj = None
            if type(obj) is dict:
                return [obj]
        decoder = O2GEventDecoder(self.max_event_size)
        try:
            items = decoder.feed(body)
            decoder.feed_eof()
        except VendorProtocolError:
            return None
        if not items or any(isinstance(i, MalformedEvent) for i in items):
            return None
        return list(items)
