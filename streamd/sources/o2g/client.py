"""The O2G REST client: discovery, login, session, keepalive, subscriptions, the chunk channel.

The ACD reads built on it (agent states, pilots, pilot monitoring, RTI) are in :mod:`.acd`.

Rules:

1. Every httpx call runs inside :func:`~streamd.sources.http.httpx_errors`; a non-2xx answer
   becomes a streamd error through :func:`raise_for_status` (RestErrorInfo aware): an invalid
   session is a :class:`SessionExpired` (transient: log in again), credentials rejected on the
   very first login are an :class:`~streamd.errors.AuthError` (fatal, one clear line).
2. URLs are followed exactly as O2G returns them at each hop (004 L39-66, L219-232, L264-290,
   L2184-2205). As ALE's SDK does, the login URL of the network ``config.network`` names
   (private: intranet, or public: reverse proxy) is tried first and the other one when the first
   cannot be reached (no answer at all: refused, timed out); the network that answered is then
   followed for the rest of the session (:attr:`O2GClient.network`).
3. HA (004 L340): :class:`Servers` remembers which server of the pair is active across sessions;
   :meth:`O2GClient.connect` tries the active one, then the other, whatever the first answered;
   a failure of both raises (a fatal one first) and the supervisor backs off. So the source fails
   over and back, with backoff. A chunk channel that could not be reopened in time makes the
   other server the first choice (:meth:`Servers.prefer_other`).
4. Once the source has connected (subscribed) before, an O2G answer to discovery, login, session
   creation or subscription is transient unless O2G says otherwise: a ``RestErrorInfo`` with
   ``canRetry: false`` (or refused credentials, a ``REFUSED`` subscription). Tomcat answers its
   own HTML 404 while the O2G webapp deploys after a restart. On the very first connection such
   an answer stays fatal: it is most likely a wrong ``url``.
5. One :class:`O2GClient` per session (``async with``): a new login, a new cookie jar, a new
   connection pool. It holds no retry loop. TLS verification (``verify``) is computed once per
   source (:func:`~streamd.sources.http.tls_verify`) and handed in.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

import anyio
import httpx
import orjson

from streamd.errors import AuthError, BackOff, FatalError, SourceError, TransientError
from streamd.sources.http import CertificateError, httpx_errors
from streamd.sources.o2g.auth import O2GAuth
from streamd.sources.o2g.config import O2GSourceConfig, api_root, selectors_for
from streamd.sources.o2g.protocol import O2GRequestError, SessionExpired, error_from_response

log = logging.getLogger("streamd.sources.o2g")

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


def _json_or_none(content: bytes) -> Any:
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
    """Module rule 4: during a reconnect an O2G answer is transient unless ``canRetry: false``."""
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


class O2GClient:
    """One O2G session's REST calls. Use as ``async with O2GClient(config, servers) as client``."""

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

    async def __aenter__(self) -> O2GClient:
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
        return _json_or_none(response.content)

    # -- lifecycle -----------------------------------------------------------------------

    async def connect(self) -> SessionInfo:
        """Discover, log in and open a session on the active server, else on the other one.

        Raises:
            AuthError: credentials rejected on the first login ever (fatal).
            FatalError: a server answered what retrying cannot change (module rule 4), and the
                other one did not do better.
            SourceError: both servers failed (retry with backoff).
        """
        failures: list[SourceError] = []
        for index in self.servers.order():
            root = self.servers.roots[index]
            try:
                info = await self._connect_to(root)
            except SourceError as exc:
                failure = again(exc, self.servers.subscribed_once)
                log.info("o2g %s: %s unavailable: %s", self.config.name, root, failure)
                failures.append(failure)
                continue
            if index != self.servers.active:
                log.warning("o2g %s: failed over to %s", self.config.name, root)
            self.servers.active = index
            self.servers.logged_in_once = True
            self.session = info
            return info
        raise next((f for f in failures if isinstance(f, FatalError)), failures[0])

    async def _connect_to(self, root: str) -> SessionInfo:
        auth_urls = await self._discover(root)
        sessions_url = await self._login(auth_urls)
        return await self._open_session(sessions_url, root)

    async def _discover(self, root: str) -> list[tuple[Network, str]]:
        response = await self.request("GET", root, "discovery")
        body = _json_or_none(response.content) or {}
        versions = [v for v in body.get("versions") or [] if isinstance(v, dict)]
        chosen = next((v for v in versions if v.get("id") == API_VERSION), None)
        if chosen is None:
            line = f"o2g {self.config.name}: {root} offers no API version {API_VERSION}"
            if self.servers.subscribed_once:  # rule 4: e.g. a page of a webapp still deploying
                raise TransientError(line)
            raise FatalError(line)
        urls = self._candidates(chosen, "internalUrl", "publicUrl")
        return urls or [(self.network, f"{root}/authenticate?version={API_VERSION}")]

    async def _reach(self, urls: list[tuple[Network, str]]) -> tuple[str, httpx.Response]:
        """GET the first of ``urls`` that answers at all; its network is followed from then on."""
        for index, (network, url) in enumerate(urls):
            try:
                with httpx_errors():
                    response = await self.http.get(url)
            except CertificateError:
                raise
            except TransientError as exc:
                if index == len(urls) - 1:
                    raise
                log.warning(
                    "o2g %s: the %s URL %s cannot be reached (%s): trying the %s one",
                    self.config.name, network, url, exc, urls[index + 1][0],
                )  # fmt: skip
                continue
            self.network = network
            return url, response
        raise AssertionError("no URL to reach")  # _discover always gives one

    async def _login(self, auth_urls: list[tuple[Network, str]]) -> str:
        auth_url, response = await self._reach(auth_urls)
        try:
            raise_for_status(
                response, f"o2g {self.config.name} login as {self.config.username!r}", login=True
            )
        except AuthError as exc:
            if not self.servers.logged_in_once:
                raise  # bad credentials on the first login: fatal, one clear line
            raise BackOff(str(exc), 300.0) from exc  # worked before: maybe a server-side change
        body = _json_or_none(response.content) or {}
        if self.auth.token is None and body.get("credential"):
            self.auth.set_token(str(body["credential"]))
        if self.auth.token is None:
            raise TransientError(f"o2g {self.config.name}: login returned no AlcUserId cookie")
        if str(body.get("expired", "false")).lower() == "true":
            log.warning("o2g %s: the password of %r has expired", self.config.name, self.config.username)
        sessions = self._pick(body, "internalUrl", "publicUrl")
        return sessions or auth_url.split("/authenticate")[0] + f"/{API_VERSION}/sessions"

    async def _open_session(self, sessions_url: str, root: str) -> SessionInfo:
        request: dict[str, Any] = {"applicationName": self.config.application_name}
        if self.config.session_ttl is not None:
            request["timeToLive"] = self.config.session_ttl
        response = await self.request("POST", sessions_url, "session create", json=request)
        body = _json_or_none(response.content) or {}
        base = self._pick(body, "privateBaseUrl", "publicBaseUrl") or sessions_url.rsplit("/sessions", 1)[0]
        try:
            ttl = float(body.get("timeToLive", DEFAULT_TTL))  # "1800" or 1800 (spec ambiguity 5)
        except (TypeError, ValueError):
            ttl = DEFAULT_TTL
        if body.get("otherSessions"):
            log.info("o2g %s: %d other sessions are open", self.config.name, len(body["otherSessions"]))
        return SessionInfo(
            base_url=base.rstrip("/"), ttl=ttl if ttl > 0 else DEFAULT_TTL, server=root, raw=body
        )

    def _pick(self, body: Mapping[str, Any], private: str, public: str) -> str | None:
        first, second = (private, public) if self.network == "private" else (public, private)
        value = body.get(first) or body.get(second)
        return str(value) if value else None

    def _candidates(self, body: Mapping[str, Any], private: str, public: str) -> list[tuple[Network, str]]:
        """The URLs of ``body``, the configured network's first, each URL once (module rule 2)."""
        keys: dict[Network, str] = {"private": private, "public": public}
        order: list[Network] = ["private", "public"] if self.network == "private" else ["public", "private"]
        found: list[tuple[Network, str]] = []
        for network in order:
            value = body.get(keys[network])
            if value and all(str(value) != url for _, url in found):
                found.append((network, str(value)))
        return found

    @property
    def keepalive_interval(self) -> float:
        """Seconds between session keepalives: configured, else a third of the TTL."""
        if self.config.keepalive_interval is not None:
            return self.config.keepalive_interval
        ttl = self.session.ttl if self.session else DEFAULT_TTL
        return max(0.01, ttl / 3)

    async def keepalive(self) -> None:
        """Refresh the session timer (004 L989-1027); 403 (or a 404: O2G restarting) means the
        session is gone."""
        with httpx_errors():
            response = await self.http.post(self.base_url + "/sessions/keepalive")
        if response.status_code == 403:
            raise SessionExpired(f"o2g {self.config.name}: keepalive: the session no longer exists")
        try:
            raise_for_status(response, f"o2g {self.config.name} keepalive")
        except O2GRequestError as exc:
            if exc.final:
                raise
            raise SessionExpired(f"{exc} (the session is gone)") from exc

    async def keepalive_forever(self, clock: Callable[[], float] = anyio.current_time) -> None:
        """Send a keepalive every :attr:`keepalive_interval` until cancelled or the session is lost.

        A keepalive that fails for a reason that may pass (5xx, NOT_READY, a refused connection,
        a timeout, a Retry-After) does not end the session while its TTL still allows another
        attempt: the next one follows sooner (a third of the interval, at most the time left).
        Once the TTL since the last answered keepalive is spent, the error is raised.

        Raises:
            SessionExpired: O2G says the session is gone.
            StreamdError: a keepalive failed and the session's TTL leaves no time for another.
        """
        answered = clock()
        wait = self.keepalive_interval
        while True:
            await anyio.sleep(wait)
            try:
                await self.keepalive()
            except SessionExpired:
                raise
            except (TransientError, BackOff) as exc:
                ttl = self.session.ttl if self.session else DEFAULT_TTL
                left = answered + ttl - clock()
                wait = min(self.keepalive_interval / 3, left / 2)
                if wait <= 0.01:
                    raise
                log.info("o2g %s: keepalive failed (%s); again in %.1fs", self.config.name, exc, wait)
                continue
            answered, wait = clock(), self.keepalive_interval

    async def close_session(self) -> None:
        """Close the session (DELETE, 004 L961-988), releasing its licences and subscriptions."""
        if self.session is not None:
            await self.request("DELETE", self.base_url + "/sessions", "session delete")
            self.session = None

    # -- subscriptions -------------------------------------------------------------------

    def subscription_request(
        self, webhook_url: str | None = None, pilots: Sequence[str] | None = None
    ) -> dict[str, Any]:
        """The ``SubscriptionRequest`` body for the configured packages (004 L2385-2410); ``pilots``
        are the discovered pilot numbers (:func:`~streamd.sources.o2g.config.selectors_for`).

        Raises:
            FatalError: no selector is left (only pilot packages, and no pilot was found).
        """
        selectors = selectors_for(self.config, pilots)
        if not selectors:
            raise FatalError(f"o2g {self.config.name}: no pilot found on any node: nothing to subscribe to")
        body: dict[str, Any] = {"filter": {"selectors": selectors}, "version": API_VERSION}
        if webhook_url is not None:
            body["webHookUrl"] = webhook_url
        else:
            body["timeout"] = self.config.subscription_timeout
        return body

    async def subscribe(
        self, webhook_url: str | None = None, pilots: Sequence[str] | None = None
    ) -> Subscription:
        """Create the subscription; anything but ``ACCEPTED`` is fatal for this configuration.

        Raises:
            FatalError: ``REFUSED`` (or another status), or an error O2G marks final.
            TransientError: an error answer after an earlier subscription worked (module rule 4).
        """
        request = self.subscription_request(webhook_url, pilots)
        try:
            response = await self.request("POST", self.base_url + "/subscriptions", "subscribe", json=request)
        except O2GRequestError as exc:
            failure = again(exc, self.servers.subscribed_once)
            if failure is exc:
                raise
            raise failure from exc
        body = _json_or_none(response.content) or {}
        if body.get("status") != "ACCEPTED" or not body.get("subscriptionId"):
            raise FatalError(
                f"o2g {self.config.name}: subscription {body.get('status', 'UNKNOWN')}: "
                f"{body.get('message') or 'no reason given'}"
            )
        self.servers.subscribed_once = True
        polling = self._pick(body, "privatePollingUrl", "publicPollingUrl")
        return Subscription(id=str(body["subscriptionId"]), polling_url=polling, raw=body)

    async def update_subscription(self) -> None:
        """Replace the filter of the session's subscription (PUT, 004 L2270-2310)."""
        body = {"selectors": selectors_for(self.config)}
        await self.request("PUT", self.base_url + "/subscriptions", "subscription update", json=body)

    async def unsubscribe(self, subscription_id: str) -> None:
        """Delete a subscription (004 L2311-2340)."""
        await self.request("DELETE", f"{self.base_url}/subscriptions/{subscription_id}", "unsubscribe")

    @asynccontextmanager
    async def open_channel(self, polling_url: str) -> AsyncIterator[httpx.Response]:
        """Open the chunk channel (POST, as ALE's SDKs do) and yield the streaming response.

        The read timeout is the idle timeout: no byte for that long raises ``TransientError``
        from the body iterator. A 4xx other than an invalid session means the subscription is gone.

        Raises:
            SessionExpired: the session is gone.
            SubscriptionGone: the subscription is gone.
        """
        timeout = httpx.Timeout(
            self.config.request_timeout,
            connect=self.config.channel_open_timeout,
            read=self.config.idle_timeout,
        )
        request = self.http.build_request(
            "POST", polling_url, timeout=timeout, headers={"Accept": "*/*"}, content=b""
        )
        with httpx_errors():
            response = await self.http.send(request, stream=True)
        try:
            if response.status_code >= 300:
                with httpx_errors():
                    await response.aread()
                _raise_channel_error(response, self.config.name)
            yield response
        finally:
            with anyio.CancelScope(shield=True), httpx_errors():
                await response.aclose()


def _raise_channel_error(response: httpx.Response, name: str) -> None:
    try:
        raise_for_status(response, f"o2g {name} chunk channel")
    except O2GRequestError as exc:  # 404 / NOT_FOUND / other 4xx: the subscription is gone
        raise SubscriptionGone(str(exc)) from exc
