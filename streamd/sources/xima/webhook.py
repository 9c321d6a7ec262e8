"""The call-finished receiver: ``/webhooks/xima/{source}`` on streamd's HTTP port (``calls:``).

A WebService Integration profile (seed 000 L1030-1062) targets this URL; Xima makes one request
per finished call, with the call data as URL parameters and the profile's custom headers.

Rules:

1. ``POST`` or ``GET`` (the profile's HTTP method, 000 L1058; the daemon routes both to the
   handler, which decides), anything else is 405. The request must carry the shared secret in
   the configured header (``secret_header``, default ``X-Streamd-Secret``, one of the profile's
   HTTP Headers), compared in constant time: else 401, counted (``bad_secret``). The secret is
   never a URL parameter, so it never reaches Kafka or a log.
2. Only then is the body read, at most ``max_body`` bytes: a larger declared Content-Length is
   answered 413 before anything is read, a larger body as soon as it has grown beyond the cap
   (:func:`streamd.http.limits.read_body`), counted (``body_too_large``).
3. The push is read by :func:`.calls.call_event` (tolerant). One without a call id is put on the
   dead-letter topic, then answered 400 (the same request would fail again); when the dead letter
   is not durable (rule 4's cases) it is answered 503 instead, so the request is made again and
   its dead letter with it, and the log line says so.
4. Same durability rule as the O2G webhooks: 2xx only once the event is durable
   (``await emit(...)``: Kafka acknowledged it, or the spool holds it), within ``deadline``
   seconds; past it, when Kafka and the spool refuse, or during the shutdown: 503, counted, so
   the request can be made again. One log line per transition, not per request.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Callable
from datetime import datetime

from starlette.requests import Request
from starlette.responses import Response

from streamd.errors import NormalizationError
from streamd.events import utcnow
from streamd.http.limits import BodyTooLarge, read_body
from streamd.sources.base import Emit
from streamd.sources.durable import Durability
from streamd.sources.xima.calls import call_event
from streamd.sources.xima.config import XimaCallsWebhook
from streamd.sources.xima.metric_events import dead_letters
from streamd.sources.xima.realtime import count_deviations
from streamd.telemetry import count_error

log = logging.getLogger("streamd.sources.xima")

VENDOR = "xima"
"""The ``{vendor}`` part of the webhook route."""


class CallsReceiver:
    """One Xima source's call-finished endpoint (:meth:`handle`)."""

    def __init__(
        self, source: str, cfg: XimaCallsWebhook, emit: Emit, *, now: Callable[[], datetime] = utcnow
    ) -> None:
        self.source = source
        self.cfg = cfg
        self.emit = emit
        self._now = now
        self._secret = cfg.secret.get_secret_value().encode()
        self._durability = Durability(source, f"xima {source}", "call-finished pushes", log)

    async def handle(self, request: Request) -> Response:
        """Handle one call-finished request (see the module rules for the answers)."""
        if request.method not in ("POST", "GET"):
            return Response(status_code=405, headers={"Allow": "GET, POST"})
        given = request.headers.get(self.cfg.secret_header, "").encode()
        if not hmac.compare_digest(given, self._secret):
            count_error(self.source, "webhook", "bad_secret")
            return Response("bad or missing secret", status_code=401)
        try:
            body = await read_body(request, self.cfg.max_body)
        except BodyTooLarge as exc:
            count_error(self.source, "webhook", "body_too_large")
            return Response(f"{exc}\n", status_code=413)
        try:
            event = call_event(
                self.source,
                call_id_field=self.cfg.call_id_field,
                method=request.method,
                query=request.query_params.multi_items(),
                body=body,
                content_type=request.headers.get("content-type", ""),
                now=self._now(),
            )
        except NormalizationError as exc:
            count_error(self.source, "processing", exc.error_type)
            raw = f"{request.method} {request.url.path}?{request.url.query}\n".encode() + body
            dead = dead_letters(self.source, [(exc, raw)])
            refused = await self._durability(
                self.emit, dead, self.cfg.deadline, "the dead letter of a push without a call id"
            )
            if refused is not None:  # rule 3: the sender may make it again, the dead letter with it
                return Response(f"dead letter not accepted: {refused}", status_code=503)
            return Response(f"{exc}\n", status_code=400)
        count_deviations(self.source, [event])
        refused = await self._durability(self.emit, [event], self.cfg.deadline)
        if refused is not None:
            return Response(f"event not accepted: {refused}", status_code=503)
        return Response(status_code=200)
