"""Xima authentication: a static Bearer service-user key (seed 000 L129-137; 001 L2).

Rules:

1. :class:`BearerAuth` is an ``httpx.Auth`` whose flow does no I/O: it sets the header and yields
   the request once. The key never expires (the seed documents no refresh), so a 401 is final.
2. The websocket carries the same key as the ``auth_token`` query parameter (000 L962, L969);
   :func:`websocket_query` builds that query with repeated ``id=`` parameters (000 L968).
3. The key is a :class:`pydantic.SecretStr` until the moment it is written into a request.
"""

from __future__ import annotations

from collections.abc import Generator, Iterable
from urllib.parse import urlencode

import httpx
from pydantic import SecretStr


class BearerAuth(httpx.Auth):
    """``Authorization: Bearer {key}`` on every request."""

    def __init__(self, key: SecretStr) -> None:
        self._key = key

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        """Add the header and send the request once (no retry: the key is static)."""
        request.headers["Authorization"] = f"Bearer {self._key.get_secret_value()}"
        yield request

    def __repr__(self) -> str:
        return "BearerAuth(key=**********)"


def websocket_query(ids: Iterable[str], key: SecretStr) -> str:
    """``id=A&id=B&auth_token=KEY``: the subscription query (repeated ``id``, not comma-separated)."""
    pairs = [("id", i) for i in ids]
    pairs.append(("auth_token", key.get_secret_value()))
    return urlencode(pairs)
