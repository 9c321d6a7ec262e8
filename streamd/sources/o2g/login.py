"""O2G login, session and keepalive: discovery, authentication, session creation, HA choice.

Rules:

1. Every call goes through :meth:`~.rest.O2GRest.request` or
   :func:`~streamd.sources.http.httpx_errors` and :func:`~.rest.raise_for_status`; credentials
   rejected on the very first login are an :class:`~streamd.errors.AuthError` (fatal, one clear
   line).
2. URLs are followed exactly as O2G returns them at each hop (004 L39-66, L219-232, L264-290,
   L2184-2205). As ALE's SDK does, the login URL of the network ``config.network`` names
   (private: intranet, or public: reverse proxy) is tried first and the other one when the first
   cannot be reached (no answer at all: refused, timed out); the network that answered is then
   followed for the rest of the session (:attr:`~.rest.O2GRest.network`).
3. HA (004 L340): :class:`~.rest.Servers` remembers which server of the pair is active across
   sessions;
   :meth:`O2GLogin.connect` tries the active one, then the other, whatever the first answered;
   a failure of both raises (a fatal one first) and the supervisor backs off. So the source fails
   over and back, with backoff. A chunk channel that could not be reopened in time makes the
   other server the first choice (:meth:`~.rest.Servers.prefer_other`).
4. Once the source has connected (subscribed) before, an O2G answer to discovery, login, session
   creation or subscription is transient unless O2G says otherwise: a ``RestErrorInfo`` with
   ``canRetry: false`` (or refused credentials, a ``REFUSED`` subscription). Tomcat answers its
   own HTML 404 while the O2G webapp deploys after a restart. On the very first connection such
   an answer stays fatal: it is most likely a wrong ``url``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

import anyio
import httpx

from streamd.errors import AuthError, BackOff, FatalError, SourceError, TransientError
from streamd.sources.http import CertificateError, httpx_errors
from streamd.sources.o2g.protocol import O2GRequestError, SessionExpired
from streamd.sources.o2g.rest import (
    API_VERSION,
    DEFAULT_TTL,
    Network,
    O2GRest,
    SessionInfo,
    again,
    json_or_none,
    raise_for_status,
)

log = logging.getLogger("streamd.sources.o2g")


class O2GLogin(O2GRest):
    """Connecting and keeping one O2G session (use the subclass :class:`~.client.O2GClient`)."""

    # -- lifecycle -----------------------------------------------------------------------

    async def connect(self) -> SessionInfo:
        """Discover, log in and open a session on the active server, else on the other one.

        Raises:
            AuthError: credentials rejected on the first login ever (fatal).
            FatalError: a server answered what retrying cannot change (rule 4), and the
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
        body = json_or_none(response.content) or {}
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
        body = json_or_none(response.content) or {}
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
        body = json_or_none(response.content) or {}
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

    def _candidates(self, body: Mapping[str, Any], private: str, public: str) -> list[tuple[Network, str]]:
        """The URLs of ``body``, the configured network's first, each URL once (rule 2)."""
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
