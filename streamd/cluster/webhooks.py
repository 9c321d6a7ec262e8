"""Webhooks on any replica: a POST for a source another replica owns is forwarded to its owner
(docs/architecture.md "Several replicas", "Webhooks on any replica").

Rules:

1. The owner of a webhook source advertises in the state topic (key ``source/@webhook``) the URL of
   its HTTP port and the SHA-256 digests of the credentials its receiver accepts (the live
   subscription ids, the session's ``AlcUserId``), never the credentials themselves: every replica
   reads that topic, and a session token is an O2G login.
2. Every replica follows the state topic (the member's ``webhooks`` job) and keeps the newest
   advertisement of each source (:meth:`WebhookForwarder.learn`).
3. A POST for a source of the cluster that does not run here (:meth:`WebhookForwarder.forward`):
   a Cookie matching none of the owner's digests answers 503 with ``Retry-After`` (O2G may POST
   before the owner published a new subscription; a 4xx would make O2G drop the events); else the
   body (at most the owner's advertised cap, else 413 like the owner) is forwarded with the Cookie, Content-Type,
   secret header and query string, marked ``X-Streamd-Forwarded``, and the owner's answer is
   returned as it is: a 2xx means the owner made the events durable. An owner that does not answer
   within :data:`FORWARD_TIMEOUT`: 503 with ``Retry-After``. A forwarded POST whose source does not
   run on the replica it reached is never forwarded again: 503 (the source is moving).
4. A name that is not a source of the cluster is not this module's: the registry answers 404.
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket
from collections.abc import Iterable
from dataclasses import dataclass

import httpx
import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from streamd.http.limits import BodyTooLarge, read_body
from streamd.sources.o2g.webhook import SECRET_HEADER, cookie_candidates
from streamd.telemetry import count_error

log = logging.getLogger("streamd.cluster")

ADVERT_NAME = "@webhook"
"""The cursor name under which a source's advertisement is kept in the state topic (rule 1)."""
FORWARDED_HEADER = "X-Streamd-Forwarded"
FORWARD_TIMEOUT = 15.0
"""Seconds the owner has to answer a forwarded POST (its receiver's deadline is shorter)."""
MAX_BODY = 4 << 20
"""The largest body forwarded when the owner advertised no cap of its own, in bytes."""
RETRY_AFTER = 2
"""Seconds a refused POST is told to wait: about the time an owner needs to advertise."""
KEPT_HEADERS = ("cookie", "content-type", SECRET_HEADER.lower())


def digest(credential: str) -> str:
    """The SHA-256 hex digest advertised for one credential (rule 1)."""
    return hashlib.sha256(credential.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Advert:
    """Where a source's webhooks are handled and which credentials its owner accepts."""

    url: str
    digests: frozenset[str]
    max_body: int = MAX_BODY

    @classmethod
    def of(cls, url: str, credentials: Iterable[str], max_body: int | None = None) -> Advert:
        """The advertisement of an owner at ``url`` accepting ``credentials`` and bodies of at
        most ``max_body`` bytes."""
        return cls(url, frozenset(digest(c) for c in credentials if c), max_body or MAX_BODY)

    def encode(self) -> str:
        """The state topic value."""
        return orjson.dumps(
            {"url": self.url, "digests": sorted(self.digests), "max_body": self.max_body}
        ).decode()

    @classmethod
    def decode(cls, value: str) -> Advert | None:
        """An advertisement read back; None for a value that is not one (never raises)."""
        try:
            data = orjson.loads(value)
            url, digests = data["url"], data["digests"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            return None
        if not isinstance(url, str) or not isinstance(digests, list):
            return None
        max_body = data.get("max_body")
        cap = max_body if isinstance(max_body, int) and max_body > 0 else MAX_BODY
        return cls(url, frozenset(d for d in digests if isinstance(d, str)), cap)

    def accepts(self, cookie: str) -> bool:
        """True when the Cookie header carries one of the advertised credentials."""
        return bool(cookie) and any(digest(c) in self.digests for c in cookie_candidates(cookie))


def advertised_base(host: str, port: int) -> str:
    """The URL other replicas reach this one's HTTP port at: ``POD_IP`` (the chart sets it), else
    the listen host, else (listening on every address) this host name's address."""
    chosen = os.environ.get("POD_IP", "").strip()
    if not chosen:
        chosen = host
        if host in ("", "0.0.0.0", "::", "[::]"):
            try:
                chosen = socket.gethostbyname(socket.gethostname())
            except OSError:
                chosen = "127.0.0.1"
    chosen = chosen.strip("[]")
    return f"http://[{chosen}]:{port}" if ":" in chosen else f"http://{chosen}:{port}"


def _refuse(why: str, status: int = 503) -> Response:
    headers = {"Retry-After": str(RETRY_AFTER)} if status == 503 else {}
    return JSONResponse({"error": why}, status_code=status, headers=headers)


class WebhookForwarder:
    """Forwards webhook POSTs to the owner of their source (module rules).

    Args:
        units: the source names of the cluster (a POST for any other name is not forwarded).
    """

    def __init__(self, units: Iterable[str]) -> None:
        self.units = frozenset(units)
        self.adverts: dict[str, Advert] = {}
        self._client: httpx.AsyncClient | None = None

    def learn(self, source: str, value: str | None) -> None:
        """Record an advertisement read from the state topic (rule 2); a tombstone forgets it."""
        advert = Advert.decode(value) if value is not None else None
        if advert is None:
            self.adverts.pop(source, None)
        else:
            self.adverts[source] = advert

    async def aclose(self) -> None:
        """Close the HTTP client (the next forward opens another)."""
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    async def forward(self, vendor: str, source: str, request: Request) -> Response | None:
        """Answer a request for ``source`` that does not run here (rule 3), forwarded with its own
        method (the owner's handler decides which it takes); None when ``source`` is not a source
        of the cluster (rule 4)."""
        if source not in self.units:
            return None
        if request.headers.get(FORWARDED_HEADER):
            count_error(source, "webhook", "moving")
            return _refuse(f"webhook source {vendor}/{source} is moving to another replica: retry")
        advert = self.adverts.get(source)
        if advert is None or not advert.accepts(request.headers.get("cookie", "")):
            count_error(source, "webhook", "unknown_subscription_elsewhere")
            return _refuse(f"webhook source {vendor}/{source}: subscription not known on this replica yet")
        try:
            body = await read_body(request, advert.max_body)
        except BodyTooLarge as exc:
            count_error(source, "webhook", "body_too_large")
            return Response(f"{exc}\n", status_code=413)
        headers = {k: v for k, v in request.headers.items() if k.lower() in KEPT_HEADERS}
        headers[FORWARDED_HEADER] = "1"
        url = f"{advert.url}/webhooks/{vendor}/{source}"
        if request.url.query:
            url += "?" + request.url.query
        if self._client is None:  # no proxy from the environment: the owner is a neighbour
            self._client = httpx.AsyncClient(timeout=FORWARD_TIMEOUT, trust_env=False)
        try:
            answer = await self._client.request(request.method, url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            count_error(source, "webhook", "owner_unreachable")
            log.debug("webhook %s/%s: owner %s did not answer: %s", vendor, source, advert.url, exc)
            return _refuse(f"webhook source {vendor}/{source}: its replica did not answer: retry")
        kept = {
            k: v for k, v in answer.headers.items() if k.lower() in ("retry-after", "allow", "content-type")
        }
        return Response(answer.content, status_code=answer.status_code, headers=kept)
