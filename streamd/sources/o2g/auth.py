"""O2G authentication as an :class:`httpx.Auth` whose flow does no I/O.

Rules:

1. The authenticate resource (``…/api/rest/authenticate``) gets ``Authorization: Basic`` and
   nothing else (004 L219-221); every other request gets the session cookies (004 L203, L268).
2. Cookies are captured from ``Set-Cookie`` headers only (``AlcUserId`` from the login,
   ``JSESSIONID`` from the session creation, 004 L227, L283), never from bodies, so the flow
   never forces a streamed chunk channel to be read.
3. The flow is a plain generator: testable with ``httpx.MockTransport`` and no server.
"""

from __future__ import annotations

import base64
from collections.abc import Generator

import httpx

COOKIE_NAME = "AlcUserId"


def is_login(request: httpx.Request) -> bool:
    """True for the authenticate resource, which takes Basic credentials instead of the cookie."""
    return request.url.path.rstrip("/").endswith("/authenticate")


class O2GAuth(httpx.Auth):
    """Basic credentials for the login, the ``AlcUserId`` (and other session) cookies afterwards."""

    def __init__(self, username: str, password: str) -> None:
        raw = f"{username}:{password}".encode()
        self._basic = "Basic " + base64.b64encode(raw).decode("ascii")
        self.cookies: dict[str, str] = {}

    @property
    def token(self) -> str | None:
        """The ``AlcUserId`` credential, once logged in."""
        return self.cookies.get(COOKIE_NAME)

    def set_token(self, token: str) -> None:
        """Use ``token`` as ``AlcUserId`` (fallback when the login sent no Set-Cookie)."""
        self.cookies[COOKIE_NAME] = token

    def reset(self) -> None:
        """Forget every cookie (before a new login: one cookie opens one session, 004 L705)."""
        self.cookies.clear()

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        """Add credentials, send, and remember the cookies the response sets."""
        if is_login(request):
            self.reset()
            request.headers["Authorization"] = self._basic
            request.headers.pop("Cookie", None)
        elif self.cookies:
            request.headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        response = yield request
        for key, value in response.cookies.items():
            self.cookies[key] = value
