"""The O2G REST core: one session's HTTP client, its requests and the values sessions share.

Login, session and keepalive are in :mod:`.login`, subscriptions and the chunk channel in
:mod:`.client` (:class:`~streamd.sources.o2g.client.O2GClient`, built on both).

Rules:

1. Every httpx call runs inside :func:`~streamd.sources.http.httpx_errors`; a non-2xx answer
   becomes a streamd error through :func:`raise_for_status` (RestErrorInfo aware): an invalid
   session is a :class:`~streamd.sources.o2g.protocol.SessionExpired` (transient: log in again).
2. One client per session (``async with``): a new login, a new cookie jar, a new connection
   pool. It holds no retry loop. TLS verification (``verify``) is computed once per source
   (:func:`~streamd.sources.http.tls_verify`) and handed in.
3. :class:`Servers` (the HA pair, which one is active) and :func:`again` (an answer during a
   reconnect is transient unless O2G says otherwise) live as long as the source: see
   :mod:`.login` rules 3 and 4.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Self

import anyio
import httpx
import orjson

from streamd.errors import SourceError, TransientError
from streamd.sources.http import httpx_errors
from streamd.sources.o2g.auth import O2GAuth
from streamd.sources.o2g.config import O2GSourceConfig, api_root
from streamd.sources.o2g.protocol import O2GRequestError, error_from_response

API_VERSION = "1.0"
Network = Literal["private", "public"]
DEFAULT_TTL = 1800.0  # 004 L269


class SubscriptionGone(TransientError):
    """The subscription no longer exists (its channel answered 4xx): subscribe again."""

    error_type = "subscription_gone"


def raise_for_status(response: httpx.Response, what: str, *, login: bool = False) -> None:
    """Raise the streamd error an O2G answer stands for; return on 2xx.

    The response body must have been read; ``RestErrorInfo`` bodies are classified by
    :func:`~streamd.sources.o2g.protocol.error_from_response` (type first, then HTTP status).

    Raises:
        SessionExpired: the session is gone (INVALID_SESSION, 401/403 without a usable type).
        StreamdError: the class the response stands for.
    """
    if 200 <= response.status_code < 300:
        return
    raise error_from_response(response.status_code, response.content, what=what, login=login)


def json_or_none(content: bytes) -> Any:
    """``content`` decoded as JSON, ``None`` when empty or not JSON."""
    try:
        return orjson.loads(content) if content else None
    except orjson.JSONDecodeError:
        return None


@dataclass(slots=True)
class Servers:
    """The HA pair's API roots and which one is active; lives as long as the source."""

    roots: list[str]
    active: int = 0
    logged_in_once: bool = False
    subscribed_once: bool = False

    @classmethod
    def of(cls, config: O2GSourceConfig) -> Servers:
        """The primary (and secondary, if configured) ``/api/rest`` roots."""
        roots = [api_root(config.url)]
        if config.secondary_url:
            roots.append(api_root(config.secondary_url))
        return cls(roots)

    def order(self) -> list[int]:
        """Indexes to try: the active server first, then the other."""
        return [self.active, *(i for i in range(len(self.roots)) if i != self.active)]

    def prefer_other(self) -> None:
        """Make the other server of an HA pair the first one tried (no-op for a single server)."""
        if len(self.roots) > 1:
            self.active = (self.active + 1) % len(self.roots)


def again(exc: SourceError, reconnecting: bool) -> SourceError:
    """:mod:`.login` rule 4: during a reconnect an O2G answer is transient unless ``canRetry: false``."""
    if reconnecting and isinstance(exc, O2GRequestError) and not exc.final:
        return TransientError(f"{exc} (retrying: O2G may still be starting)")
    return exc


@dataclass(frozen=True, slots=True)
class SessionInfo:
    """What session creation returned."""

    base_url: str
    ttl: float
    server: str
    raw: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Subscription:
    """An ACCEPTED subscription."""

    id: str
    polling_url: str | None
    raw: Mapping[str, Any] = field(default_factory=dict)


class O2GRest:
    """One O2G session's HTTP client and REST reads (use the subclass :class:`~.client.O2GClient`)."""

    def __init__(
        self,
        config: O2GSourceConfig,
        servers: Servers,
        *,
        verify: ssl.SSLContext | bool = True,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.config = config
        self.servers = servers
        self.auth = O2GAuth(config.username, config.password.get_secret_value())
        self.session: SessionInfo | None = None
        self.network: Network = config.network  # the one this session follows (module rule 2)
        self._verify = verify
        self._transport = transport
        self._http: httpx.AsyncClient | None = None

    async def __aenter__(self) -> Self:
        self._http = httpx.AsyncClient(
            auth=self.auth,
            timeout=httpx.Timeout(self.config.request_timeout),
            verify=self._verify,
            transport=self._transport,
            headers={"Accept": "application/json"},
        )
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._http is not None:
            with anyio.CancelScope(shield=True):
                await self._http.aclose()

    @property
    def http(self) -> httpx.AsyncClient:
        """The underlying httpx client (inside ``async with`` only)."""
        assert self._http is not None, "use O2GClient inside 'async with'"
        return self._http

    @property
    def base_url(self) -> str:
        """The session's ``…/api/rest/1.0`` base URL."""
        assert self.session is not None, "connect() first"
        return self.session.base_url

    # -- requests ------------------------------------------------------------------------

    async def request(
        self, method: str, url: str, what: str, *, json: Any = None, params: Mapping[str, str] | None = None
    ) -> httpx.Response:
        """Send one request and raise the streamd error for a non-2xx answer."""
        with httpx_errors():
            response = await self.http.request(method, url, json=json, params=params)
        raise_for_status(response, f"o2g {self.config.name} {what}")
        return response

    async def get_json(self, path: str, what: str, params: Mapping[str, str] | None = None) -> Any:
        """GET ``{base}{path}`` and decode its JSON body (``None`` for an empty body)."""
        response = await self.request("GET", self.base_url + path, what, params=params)
        return json_or_none(response.content)

    def _pick(self, body: Mapping[str, Any], private: str, public: str) -> str | None:
        first, second = (private, public) if self.network == "private" else (public, private)
        value = body.get(first) or body.get(second)
        return str(value) if value else None
