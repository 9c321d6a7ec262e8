"""OAuth2 client credentials for Alvaria as an ``httpx.Auth`` with a pure, I/O-free ``auth_flow``.

Rules:

1. The token request is RFC 6749 §4.4 (the seed documents only the flow name and the scope):
   ``POST token_url`` with ``grant_type=client_credentials&scope=reportingapi``, the client id and
   secret sent as HTTP Basic, as form fields, or both (``client_auth``).
2. The token is cached until ``expires_in`` minus a margin (at most half the lifetime); without
   ``expires_in`` it is kept until a data call answers 401.
3. Every data call carries ``Authorization: Bearer``, ``x-api-key`` and ``Accept: application/json``.
4. A 401 from a data call drops the token, fetches a new one and repeats the call once; a second
   401 raises :class:`AuthError` with one clear line. Token endpoint failures map through
   :func:`~streamd.sources.http.check_status` (a rejected client is an :class:`AuthError`).
5. Time comes from an injected ``clock`` (seconds, monotonic by default), so expiry is testable.
6. One refresh at a time (an async client, :meth:`AlvariaAuth.async_auth_flow`): concurrent calls
   that need a token wait for the one request under way and use its token, at start and at every
   expiry; a 401 refreshes only when no other call has replaced the rejected token meanwhile; a
   refresh that failed fails the calls that waited for it with the same error (no request each).
   The steps are the same pure methods as the sync flow's; only the lock is added.
7. :meth:`AlvariaAuth.refresh_if_needed` makes the same refresh ahead of a cycle's data calls: a
   token endpoint that fails then fails the cycle once (one line), not every scope of it.
"""

from __future__ import annotations

import base64
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Generator
from typing import Any
from urllib.parse import quote

import anyio
import httpx
import orjson

from streamd.errors import AuthError, BackOff, SourceError, TransientError, VendorProtocolError
from streamd.sources.alvaria.models import error_detail
from streamd.sources.http import check_status


class AlvariaAuth(httpx.Auth):
    """Bearer token from the client-credentials grant, plus the ``x-api-key`` header."""

    requires_response_body = True

    def __init__(
        self,
        *,
        token_url: str,
        client_id: str,
        client_secret: str,
        api_key: str,
        scope: str = "reportingapi",
        client_auth: str = "basic",
        margin: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.token_url = token_url
        self._client_id = client_id
        self._client_secret = client_secret
        self._api_key = api_key
        self.scope = scope
        self.client_auth = client_auth
        self.margin = margin
        self.clock = clock
        self._token: str | None = None
        self._refresh_at: float | None = None
        self.fetches = 0
        self._lock: anyio.Lock | None = None
        self._attempts = 0
        self._failure: SourceError | None = None

    def __repr__(self) -> str:
        return f"AlvariaAuth(token_url={self.token_url!r}, client_id={self._client_id!r})"

    @property
    def token(self) -> str | None:
        """The cached access token (None before the first fetch or after a 401)."""
        return self._token

    def needs_token(self, at: float | None = None) -> bool:
        """True when no token is cached or the cached one is about to expire (now, or by ``at``)."""
        when = self.clock() if at is None else at
        return self._token is None or (self._refresh_at is not None and when >= self._refresh_at)

    def token_request(self) -> httpx.Request:
        """The client-credentials token request."""
        form = {"grant_type": "client_credentials", "scope": self.scope}
        headers = {"Accept": "application/json", "Content-Type": "application/x-www-form-urlencoded"}
        if self.client_auth in ("basic", "both"):
            pair = f"{quote(self._client_id, safe='')}:{quote(self._client_secret, safe='')}"
            headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
        if self.client_auth in ("body", "both"):
            form |= {"client_id": self._client_id, "client_secret": self._client_secret}
        return httpx.Request("POST", self.token_url, data=form, headers=headers)

    def store_token(self, response: httpx.Response) -> None:
        """Cache the token from a token-endpoint response.

        Raises:
            AuthError: the token endpoint rejected the client (400/401/403).
            BackOff | TransientError: the token endpoint is throttling or failing.
            VendorProtocolError: a 2xx answer without a usable ``access_token``.
        """
        self.fetches += 1
        if response.status_code in (400, 401, 403):
            raise AuthError(
                f"alvaria token endpoint {self.token_url} rejected client {self._client_id!r} with HTTP "
                f"{response.status_code}{error_detail(response.content)}: check client_id, client_secret "
                f"and scope {self.scope!r}"
            )
        what = f"alvaria POST {self.token_url}"
        try:
            check_status(response, what)
        except BackOff as exc:
            raise BackOff(
                f"{what}: HTTP {response.status_code}{error_detail(response.content)}", exc.delay
            ) from None
        except SourceError as exc:
            raise type(exc)(f"{what}: HTTP {response.status_code}{error_detail(response.content)}") from None
        body = _json(response)
        token = body.get("access_token")
        if not isinstance(token, str) or not token:
            raise VendorProtocolError(f"alvaria token endpoint {self.token_url}: answer without access_token")
        self._token = token
        expires_in = body.get("expires_in")
        if isinstance(expires_in, str) and expires_in.isdigit():
            expires_in = int(expires_in)
        if isinstance(expires_in, int | float) and not isinstance(expires_in, bool) and expires_in > 0:
            self._refresh_at = self.clock() + expires_in - min(self.margin, expires_in / 2)
        else:
            self._refresh_at = None

    def sign(self, request: httpx.Request) -> None:
        """Add the bearer token, ``x-api-key`` and ``Accept`` headers to a data request."""
        request.headers["Authorization"] = f"Bearer {self._token}"
        request.headers["x-api-key"] = self._api_key
        request.headers["Accept"] = "application/json"

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        """Fetch or reuse a token, send the request, and on a 401 refresh once and resend.

        Raises:
            AuthError: the request is still rejected with 401 after a fresh token.
        """
        if self.needs_token():
            self.store_token((yield self.token_request()))
        self.sign(request)
        response = yield request
        if response.status_code != 401:
            return
        self._token = None
        self.store_token((yield self.token_request()))
        self.sign(request)
        response = yield request
        if response.status_code == 401:
            self._token = None
            raise self.rejected(request, response)

    async def async_auth_flow(self, request: httpx.Request) -> AsyncGenerator[httpx.Request, httpx.Response]:
        """:meth:`auth_flow` with one token refresh at a time (rule 6).

        Raises:
            AuthError: the token endpoint refused the client, or a 401 even with a fresh token.
            BackOff | TransientError | VendorProtocolError: the token endpoint failed (also for the
                calls that waited for that refresh).
        """
        lock = self._lock = self._lock or anyio.Lock()
        if self.needs_token():
            seen = self._attempts
            async with lock:
                self._raise_if_failed_since(seen)
                if self.needs_token():  # nobody refreshed while this call waited
                    token_request = self._begin_refresh()
                    await self._stored((yield token_request))
        used = self._token
        self.sign(request)
        response = yield request
        if response.status_code != 401:
            return
        await response.aread()
        seen = self._attempts
        async with lock:
            self._raise_if_failed_since(seen)
            if self._token in (used, None):  # no other call replaced the rejected token meanwhile
                self._token = None
                token_request = self._begin_refresh()
                await self._stored((yield token_request))
        used = self._token
        self.sign(request)
        response = yield request
        if response.status_code == 401:
            await response.aread()
            if self._token == used:
                self._token = None
            raise self.rejected(request, response)

    async def refresh_if_needed(self, send: Callable[[httpx.Request], Awaitable[httpx.Response]]) -> None:
        """Fetch a token now when none is usable (through ``send``, without auth), so that the
        data calls of a cycle do not each meet a failing token endpoint (rule 7).

        Raises:
            AuthError | BackOff | TransientError | VendorProtocolError: as the token refresh of
                :meth:`async_auth_flow`.
        """
        if not self.needs_token():
            return
        lock = self._lock = self._lock or anyio.Lock()
        seen = self._attempts
        async with lock:
            self._raise_if_failed_since(seen)
            if self.needs_token():
                await self._stored(await send(self._begin_refresh()))

    def _begin_refresh(self) -> httpx.Request:
        """The token request of one attempt; until its answer is stored, the attempt counts as
        failed, so one that never ends (cancelled, transport error) fails the calls that waited."""
        self._attempts += 1
        self._failure = TransientError(f"alvaria token request to {self.token_url} did not complete")
        return self.token_request()

    async def _stored(self, response: httpx.Response) -> None:
        await response.aread()
        try:
            self.store_token(response)
        except SourceError as exc:
            self._failure = exc
            raise
        self._failure = None

    def _raise_if_failed_since(self, seen: int) -> None:
        """The refresh this call waited for failed: fail with the same error, without a request."""
        failure = self._failure
        if self._attempts != seen and failure is not None:
            if isinstance(failure, BackOff):
                raise BackOff(str(failure), failure.delay)
            raise type(failure)(str(failure))

    def rejected(self, request: httpx.Request, response: httpx.Response) -> AuthError:
        """The error for a data call still answered 401 with a fresh token."""
        return AuthError(
            f"alvaria {request.method} {request.url.path}: HTTP 401 even with a fresh token"
            f"{error_detail(response.content)}: check the x-api-key and that client {self._client_id!r} "
            f"has scope {self.scope!r}"
        )


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        body = orjson.loads(response.content)
    except orjson.JSONDecodeError as exc:
        raise VendorProtocolError(f"alvaria token endpoint: invalid JSON ({exc})") from exc
    if not isinstance(body, dict):
        raise VendorProtocolError("alvaria token endpoint: the answer is not a JSON object")
    return body
