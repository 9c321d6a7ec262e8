"""Alvaria REST adapter: the only Alvaria module that sees httpx.

Rules:

1. One GET per query scope: the paths and scope parameters of seed 003 (:data:`QUERY_PATHS`,
   :data:`SCOPE_PARAMS`); presence always asks ``state=LoggedOn``, userActivity adds ``tzOffset``.
2. Every call runs inside :func:`~streamd.sources.http.httpx_errors`; callers see streamd errors
   only. Statuses map through :func:`~streamd.sources.http.check_status` (429 -> ``BackOff``
   honouring ``Retry-After``, 408/5xx -> ``TransientError``), and every refused request's line
   carries what Alvaria said (:func:`~.models.error_detail`: ``error``, ``code``, ``message``).
3. A 404 for one scope (an unknown team / worktype / list; also org-wide presence) and a 403 for
   one scope (one the client may not see) raise :class:`ScopeRefused`: that scope is skipped, the
   others are not affected.
4. Quotas are per ``x-api-key`` (003 L51): a 429 closes the source-wide :class:`RateGate`, and
   until it reopens every request raises ``BackOff`` for the rest of the wait without being sent.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import httpx

from streamd.errors import BackOff, FatalError, SourceError
from streamd.sources.alvaria.auth import AlvariaAuth
from streamd.sources.alvaria.config import DISCOVER_PATHS, AlvariaSourceConfig, ScopeKind
from streamd.sources.alvaria.models import error_detail
from streamd.sources.http import check_status, httpx_errors

QUERY_PATHS: dict[str, str] = {
    "listActivity": "/reporting/queries/listActivity/data",
    "teamActivity": "/reporting/queries/teamActivity/data",
    "userActivity": "/reporting/queries/userActivity/data",
    "channelActivity": "/reporting/queries/channelActivity/data",
    "presence": "/reporting/presence/users/data",
}
SCOPE_PARAMS: dict[str, str] = {
    "listActivity": "contactList",
    "teamActivity": "teamId",
    "userActivity": "teamId",
    "channelActivity": "workTypeId",
    "presence": "workTypeId",
}
SKIPPED_SCOPE: dict[int, tuple[str, str]] = {
    404: ("not_found", "not found"),
    403: ("forbidden", "not visible to this client"),
}
"""Answers that skip one scope of a query (error type, log text) instead of failing the query."""


class ScopeRefused(FatalError):
    """One scope answered 404 (unknown) or 403 (not visible): skip it, poll the others."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status
        self.error_type, self.why = SKIPPED_SCOPE[status]


@dataclass(slots=True)
class RateGate:
    """The earliest time (on the source's clock) any query of the source may send a request."""

    clock: Callable[[], float]
    not_before: float = float("-inf")
    cause: str = ""
    """The 429's error line (with what Alvaria said) that closed the gate last."""

    def close_for(self, seconds: float, cause: str = "") -> None:
        """No request before ``seconds`` from now (a 429's ``Retry-After``; ``cause`` its line)."""
        if self.clock() + seconds >= self.not_before:
            self.not_before, self.cause = self.clock() + seconds, cause

    def check(self, what: str) -> None:
        """Raise ``BackOff`` for the remaining wait while the gate is closed (naming its cause)."""
        remaining = self.not_before - self.clock()
        if remaining > 0:
            after = f" after {self.cause}" if self.cause else ""
            raise BackOff(f"{what}: the API key is throttled for another {remaining:.1f}s{after}", remaining)


def what_of(query: str, scope: str | None) -> str:
    """``alvaria GET userActivity team1``: how error lines name one request."""
    return f"alvaria GET {query} {scope or ''}".rstrip()


def raise_for_status(response: httpx.Response, what: str) -> None:
    """:func:`check_status` with what Alvaria said in the line (rule 2).

    Raises:
        AuthError | BackOff | TransientError | FatalError: as ``check_status`` decides.
    """
    try:
        check_status(response, what)
    except BackOff as exc:
        raise BackOff(_line(response, what), exc.delay) from None
    except SourceError as exc:
        raise type(exc)(_line(response, what)) from None


def _line(response: httpx.Response, what: str) -> str:
    return f"{what}: HTTP {response.status_code}{error_detail(response.content)}"


@dataclass(slots=True)
class AlvariaClient:
    """Thin wrapper over one ``httpx.AsyncClient`` (auth and timeouts set) for one source."""

    http: httpx.AsyncClient
    config: AlvariaSourceConfig
    gate: RateGate

    def token_due(self, at: float | None = None) -> bool:
        """Whether a call now (or at ``at``, on the auth's clock) fetches a token first: none
        cached, or it is to be refreshed by then."""
        auth = self.http.auth
        return isinstance(auth, AlvariaAuth) and auth.needs_token(at)

    async def ensure_token(self) -> None:
        """A usable token before the cycle's data calls (:meth:`AlvariaAuth.refresh_if_needed`).

        Raises:
            AuthError | BackOff | TransientError | VendorProtocolError: the token endpoint refused
                the client or failed (its error line carries what Alvaria said).
        """
        auth = self.http.auth
        if isinstance(auth, AlvariaAuth):
            with httpx_errors():
                await auth.refresh_if_needed(partial(self.http.send, auth=None))

    async def scope_list(self, kind: ScopeKind) -> bytes:
        """The body of the endpoint listing the scopes of ``kind`` (``discover_paths``).

        Raises:
            AuthError | BackOff | TransientError | FatalError: as for the queries (a 404 or 403
                too: the listing itself is missing or refused).
        """
        path = self.config.discover_paths.get(kind, DISCOVER_PATHS[kind])
        url = path if "://" in path else self.config.base_url + path
        what = f"alvaria GET {path}"
        self.gate.check(what)
        with httpx_errors():
            response = await self.http.get(url)
        try:
            raise_for_status(response, what)
        except BackOff as exc:
            if response.status_code == 429:
                self.gate.close_for(exc.delay, str(exc))
            raise
        return response.content

    async def scope_data(self, query: str, scope: str | None) -> bytes:
        """The body of one query for one scope (None: org-wide presence).

        Raises:
            ScopeRefused: 404, or 403 for a scope (rule 3).
            AuthError: the token endpoint refused the client, or a 401 even with a fresh token.
            BackOff: the gate is closed, a 429 (the gate closes), a 503 with ``Retry-After``.
            TransientError: transport errors, 408, 5xx.
            FatalError: any other refusal.
        """
        params: dict[str, str] = {}
        if scope is not None:
            params[SCOPE_PARAMS[query]] = scope
        if query == "presence":
            params["state"] = "LoggedOn"
        if query == "userActivity" and self.config.tz_offset:
            params["tzOffset"] = self.config.tz_offset
        what = what_of(query, scope)
        self.gate.check(what)
        with httpx_errors():
            response = await self.http.get(self.config.base_url + QUERY_PATHS[query], params=params)
        status = response.status_code
        if status in SKIPPED_SCOPE and (status == 404 or scope is not None):
            raise ScopeRefused(_line(response, what), status)
        try:
            raise_for_status(response, what)
        except BackOff as exc:
            if status == 429:
                self.gate.close_for(exc.delay, str(exc))
            raise
        return response.content
