"""Calabrio ONE session authentication as an :class:`httpx.Auth` (spec §2).

Rules:

1. ``auth_flow`` is a generator without I/O: it yields requests and receives responses, so it
   works with any httpx client and is unit-tested with ``httpx.MockTransport``.
2. Log in with ``POST /api/rest/authorize`` (JSON body; the user name under ``username``, ``userId``
   or both, as the seed disagrees with itself, 002 L512/L522) and send the returned ``sessionId``
   as the cookie ``hazelcast.sessionId`` on every call (002 L531-537, L7042).
3. A session is renewed proactively after ``idle`` seconds without a call (the seed says two hours
   of inactivity, the response ``sessionTimeout: "60"``; the shorter wins), and reactively,
   **once per request**, when a call answers like an expired session: 401, 403, a redirect, or an
   HTML login page. If the retried call fails the same way, its response is returned and
   :func:`streamd.sources.http.check_status` turns it into :class:`AuthError`.
4. Rejected credentials raise :class:`AuthError` with one clear line (never the password).
5. When several requests share one auth object and fail together, only the first re-authorizes;
   the others reuse the new session (the session id they were sent with is compared).
"""

from __future__ import annotations

import logging
import ssl
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Literal, Protocol

import httpx
import orjson
from pydantic import SecretStr

from streamd.errors import AuthError, StreamdError, VendorProtocolError
from streamd.sources.http import check_status, httpx_errors

log = logging.getLogger("streamd.sources.calabrio")

SESSION_COOKIE = "hazelcast.sessionId"
AUTHORIZE_PATH = "/api/rest/authorize"


@dataclass(frozen=True, slots=True)
class Credentials:
    """What ``POST /api/rest/authorize`` needs (spec §2.2)."""

    username: str
    password: str
    tenant_id: str | None = None
    language: str = "en"
    locale: str = "en"
    login_field: Literal["username", "userId", "both"] = "both"

    def body(self) -> dict[str, str]:
        """The JSON body of the authorize request."""
        body: dict[str, str] = {"locale": self.locale, "language": self.language, "password": self.password}
        if self.login_field in ("username", "both"):
            body["username"] = self.username
        if self.login_field in ("userId", "both"):
            body["userId"] = self.username
        if self.tenant_id:
            body["tenantId"] = self.tenant_id
        return body


def looks_expired(response: httpx.Response) -> bool:
    """True when a response to an API call means "log in again" (spec §1.3 inference)."""
    if response.status_code in (401, 403) or response.is_redirect:
        return True
    content_type = response.headers.get("content-type", "")
    return response.status_code == 200 and content_type.startswith("text/html")


def session_id_from(response: httpx.Response) -> str:
    """The session id of a successful authorize response (body ``sessionId``, else the cookie).

    Raises:
        VendorProtocolError: neither carries a session id.
    """
    try:
        data = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        data = None
    if isinstance(data, dict) and isinstance(data.get("sessionId"), str) and data["sessionId"]:
        return str(data["sessionId"])
    for name, value in response.cookies.items():
        if name.lower() == SESSION_COOKIE.lower() and value:
            return value
    raise VendorProtocolError("calabrio authorize: the response carries no sessionId")


def session_timeout_from(response: httpx.Response) -> float | None:
    """``sessionTimeout`` of an authorize response in seconds (the seed prints minutes as a string)."""
    try:
        data = orjson.loads(response.content)
        return float(data["sessionTimeout"]) * 60.0 if data.get("sessionTimeout") else None
    except (orjson.JSONDecodeError, TypeError, ValueError, KeyError, AttributeError):
        return None


class AuthConfig(Protocol):
    """The config fields a Calabrio login needs (the source's and the RTDC sink's configs have them)."""

    @property
    def url(self) -> str: ...
    @property
    def username(self) -> str: ...
    @property
    def password(self) -> SecretStr: ...
    @property
    def tenant_id(self) -> str | None: ...
    @property
    def language(self) -> str: ...
    @property
    def locale(self) -> str: ...
    @property
    def login_field(self) -> Literal["username", "userId", "both"]: ...
    @property
    def session_idle(self) -> float: ...
    @property
    def authorize_path(self) -> str: ...


def auth_for(cfg: AuthConfig) -> CalabrioAuth:
    """The session auth for the Calabrio user of a source or sink config.

    Args:
        cfg: any config with the login fields (:class:`AuthConfig`).

    Returns:
        A fresh :class:`CalabrioAuth` for ``cfg.url`` + ``cfg.authorize_path``.
    """
    credentials = Credentials(
        username=cfg.username,
        password=cfg.password.get_secret_value(),
        tenant_id=cfg.tenant_id,
        language=cfg.language,
        locale=cfg.locale,
        login_field=cfg.login_field,
    )
    return CalabrioAuth(credentials, cfg.url.rstrip("/") + cfg.authorize_path, idle=cfg.session_idle)


class CalabrioAuth(httpx.Auth):
    """Session-cookie authentication for Calabrio ONE.

    Args:
        credentials: the API user.
        authorize_url: absolute URL of ``/api/rest/authorize`` on the tenant.
        idle: renew the session after this many seconds without a call.
        clock: monotonic seconds (injected by tests).
    """

    requires_response_body = True

    def __init__(
        self,
        credentials: Credentials,
        authorize_url: str,
        *,
        idle: float = 3000.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.credentials = credentials
        self.authorize_url = authorize_url
        self.idle = idle
        self.clock = clock
        self.session_id: str | None = None
        self.authorizations = 0
        self._last_used = 0.0

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        """Log in when needed, send ``request`` with the cookie, re-authorize once on expiry."""
        if self.session_id is None or self.clock() - self._last_used >= self.idle:
            yield from self._authorize()
        sent_with = self.session_id
        response = yield self._with_cookie(request)
        if looks_expired(response):
            if self.session_id == sent_with:  # nobody renewed it meanwhile
                yield from self._authorize()
            response = yield self._with_cookie(request)
        self._last_used = self.clock()

    def authorize_request(self) -> httpx.Request:
        """The login request (pure)."""
        return httpx.Request("POST", self.authorize_url, json=self.credentials.body())

    def logout_request(self) -> httpx.Request | None:
        """``DELETE /api/rest/authorize`` for the current session, or None without one (002 L540-548)."""
        if self.session_id is None:
            return None
        request = httpx.Request("DELETE", self.authorize_url)
        return self._with_cookie(request)

    def forget(self) -> None:
        """Drop the session (after logout)."""
        self.session_id = None

    def _authorize(self) -> Generator[httpx.Request, httpx.Response, None]:
        response = yield self.authorize_request()
        if response.status_code in (401, 403):
            self.session_id = None
            raise AuthError(
                f"calabrio: {self.authorize_url} rejected the credentials of user "
                f"{self.credentials.username!r} (HTTP {response.status_code}); "
                "check username, password and tenant_id"
            )
        check_status(response, f"calabrio POST {self.authorize_url}")
        self.session_id = session_id_from(response)
        self.authorizations += 1
        timeout = session_timeout_from(response)
        if timeout is not None and timeout > 0:
            self.idle = min(self.idle, timeout * 0.8)
        self._last_used = self.clock()

    def _with_cookie(self, request: httpx.Request) -> httpx.Request:
        request.headers["Cookie"] = f"{SESSION_COOKIE}={self.session_id}"
        return request


async def logout(auth: CalabrioAuth, *, verify: ssl.SSLContext | bool = True) -> None:
    """Destroy the session, best effort (002 L540-548); the only I/O in this module.

    Args:
        auth: the session to destroy (nothing is sent without one).
        verify: httpx's ``verify=``, the same as the session's client used.

    A failure is logged at DEBUG: the session then simply times out on Calabrio's side.
    """
    request = auth.logout_request()
    if request is None:
        return
    try:
        async with httpx.AsyncClient(timeout=2.0, verify=verify) as client:
            with httpx_errors():
                await client.send(request)
    except StreamdError as exc:
        log.debug("calabrio: logout failed: %s", exc)
    auth.forget()
