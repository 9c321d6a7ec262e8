"""The Alvaria simulator's facade: configuration, scripting and the served app (package rules)."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from contextlib import AsyncExitStack
from typing import Any

from streamd.sim.alvaria.app import Tokens, build_app
from streamd.sim.alvaria.faults import deviate_row, query_of, row_key, scope_of
from streamd.sim.alvaria.guide import LISTS_PATH, QUERIES, TEAMS_PATH, TOKEN_PATH, WORK_TYPES_PATH
from streamd.sim.alvaria.world import AlvariaWorld
from streamd.sim.script import FaultScript, LoggedRequest, RequestLog
from streamd.sim.server import serving


class AlvariaSimulator:
    """Serve an :class:`AlvariaWorld` as the Alvaria reporting API on loopback.

    Args:
        agents: number of simulated agents (spread over ``teams`` teams and ``work_types`` worktypes).
        org_id: the organisation in the path.
        client_id / client_secret / api_key: the credentials it accepts.
        token_ttl: ``expires_in`` of issued tokens, in seconds (short by default).
        clock: seconds (epoch-like); drives token expiry, the world and the request log.
        auto_advance: move the world on by the clock before answering each data request.
        seed: seeds the world and the deviations.
        deviate: the share of rows (0..1) that deviate from seed 003 (package rule 5).
        port: 0 for an ephemeral port.
    """

    def __init__(
        self,
        *,
        agents: int = 20,
        teams: int = 2,
        work_types: int = 2,
        org_id: str = "acme",
        client_id: str = "streamd",
        client_secret: str = "s3cret",
        api_key: str = "key-123",
        token_ttl: float = 60.0,
        clock: Callable[[], float] | None = None,
        auto_advance: bool = True,
        seed: int = 1,
        deviate: float = 0.0,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        if not 0.0 <= deviate <= 1.0:
            raise ValueError(f"deviate must be a share between 0 and 1, not {deviate}")
        self.clock = clock or time.time
        self.world = AlvariaWorld(
            agents=agents, teams=teams, work_types=work_types, seed=seed, now=self.clock()
        )
        self.org_id = org_id
        self.client_id, self.client_secret, self.api_key = client_id, client_secret, api_key
        self.token_ttl = token_ttl
        self.auto_advance = auto_advance
        self.seed, self.deviate = seed, deviate
        self.deviations: dict[tuple[str, str], tuple[str, ...]] = {}
        """(query, row key) -> the deviating JSON paths of that row as last served."""
        self.host, self.port = host, port
        self.in_flight: dict[str, int] = {}
        self.max_in_flight: dict[str, int] = {}
        self.token_latency = 0.0
        """Seconds the token endpoint takes to answer (a real token service is not instant)."""
        self.latency = 0.0
        """Seconds every data answer takes (a real reporting store is not instant either)."""
        self.omitted: dict[str, frozenset[str]] = {}
        """Query -> fields left out of every served row (:meth:`omit`)."""
        self.faults = FaultScript()
        """Scripted faults, keyed by :func:`~.faults.where` (package rule 4)."""
        self.tokens = Tokens()
        self.client_refused = False
        self.url = ""
        self.log = RequestLog(build_app(self), clock=self.clock)
        """Every answered request, in order (the shared request log)."""
        self._stack: AsyncExitStack | None = None

    # -- scripting ---------------------------------------------------------------------------
    def omit(self, query: str, *fields: str) -> None:
        """Serve ``query``'s rows without ``fields`` (the guide marks every data-query field as not
        required, the row keys too); ``omit(query)`` serves them whole again."""
        self.omitted[query] = frozenset(fields)

    def deviating(self, query: str, scope: str | None, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """``rows`` without the fields the simulator omits, the share ``deviate`` of them deviating
        (which rows, and how, is a pure function of the seed, the query and the row key)."""
        omitted = self.omitted.get(query)
        if omitted:
            rows = [{k: v for k, v in row.items() if k not in omitted} for row in rows]
        if not self.deviate:
            return rows
        out = []
        for row in rows:
            key = row_key(query, row, scope)
            rng = random.Random(f"{self.seed}:{query}:{key}")  # str seeds hash stably (sha512)
            if rng.random() < self.deviate:
                row, paths = deviate_row(query, row, rng)
                self.deviations[(query, key)] = paths
            out.append(row)
        return out

    def refuse_client(self, refused: bool = True) -> None:
        """From now on the token endpoint answers 401 ``invalid_client`` (as for a revoked client
        secret), and every issued token is revoked; ``refuse_client(False)`` accepts it again."""
        self.client_refused = refused
        if refused:
            self.revoke_tokens()

    def expire_tokens(self) -> None:
        """Every issued token is expired from now on (the next data call gets 401)."""
        for token in self.tokens.issued.values():
            token.expires_at = min(token.expires_at, self.clock())

    def revoke_tokens(self) -> None:
        """Every issued token is revoked (401) although not expired."""
        for token in self.tokens.issued.values():
            token.revoked = True

    def requests(self, query: str | None = None, scope: str | None = None) -> list[LoggedRequest]:
        """The logged requests (of one query, ``"token"``, ``"teams"``...; of one scope), in order."""
        return [
            r
            for r in self.log.entries
            if (query is None or query_of(r) == query) and (scope is None or scope_of(r) == scope)
        ]

    # -- addresses ---------------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        """The ``base_url`` a source should use (ends in ``/organizations/{orgId}``)."""
        return f"{self.url}/via/v2/organizations/{self.org_id}"

    @property
    def token_url(self) -> str:
        """The ``token_url`` a source should use."""
        return self.url + TOKEN_PATH

    def scope_list_path(self, kind: str) -> str:
        """The path (below ``base_url``) that lists ``teams``, ``workTypes`` or ``lists``."""
        path = {"teams": TEAMS_PATH, "workTypes": WORK_TYPES_PATH, "lists": LISTS_PATH}[kind]
        return path.removeprefix("/via/v2/organizations/{org}")

    def source_config(self, name: str = "alvaria1", **overrides: Any) -> dict[str, Any]:
        """A ``kind: alvaria`` config block polling every query of this simulator."""
        block: dict[str, Any] = {
            "kind": "alvaria",
            "name": name,
            "base_url": self.base_url,
            "token_url": self.token_url,
            "client_id": self.client_id,
            "client_secret": self.client_secret,
            "api_key": self.api_key,
            "queries": list(QUERIES),
            "interval": "2s",
            "team_ids": list(self.world.team_ids),
            "work_type_ids": list(self.world.work_type_ids),
            "contact_lists": list(self.world.contact_lists),
        }
        return block | overrides

    # -- lifecycle ---------------------------------------------------------------------------
    async def __aenter__(self) -> AlvariaSimulator:
        async with AsyncExitStack() as stack:
            self.url = await stack.enter_async_context(serving(self.log, host=self.host, port=self.port))
            self._stack = stack.pop_all()
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._stack is not None
        await self._stack.aclose()
