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
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable, Generator
from typing import Any
from urllib.parse import quote

import httpx
import orjson

from streamd.errors import AuthError, VendorProtocolError
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

    def __repr__(self) -> str:
        return f"AlvariaAuth(token_url={self.token_url!r}, client_id={self._client_id!r})"

    @property
    def token(self) -> str | None:
        """The cached access token (None before the first fetch or after a 401)."""
        return self._token

    def needs_token(self) -> bool:
        """True when no token is cached or the cached one is about to expire."""
        return self._token is None or (self._refresh_at is not None and self.clock() >= self._refresh_at)

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
                f"{response.status_code}{_error_text(response)}: check client_id, client_secret and scope "
                f"{self.scope!r}"
            )
        check_status(response, f"alvaria POST {self.token_url}")
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
            raise AuthError(
                f"alvaria {request.method} {request.url.path}: HTTP 401 even with a fresh token"
                f"{_error_text(response)}: check the x-api-key and that client {self._client_id!r} "
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


def _error_text(response: httpx.Response) -> str:
    try:
        body = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        return ""
    if isinstance(body, dict):
        for name in ("error_description", "error", "message"):
            if isinstance(body.get(name), str):
                return f" ({body[name][:200]})"
    return ""
