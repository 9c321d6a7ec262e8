"""The Alvaria runtime: one generic :class:`Poller` per query, each a supervised job.

Rules:

1. ``run`` opens what the queries share: one ``httpx.AsyncClient`` (TLS from ``verify_tls`` /
   ``ca_file``, :func:`~streamd.sources.http.tls_verify`) with one OAuth2 token
   (:class:`~.auth.AlvariaAuth`), wrapped in one :class:`~.client.AlvariaClient` with the
   source-wide rate gate; then it hands one job per enabled query to the supervisor
   (:class:`streamd.runtime.Jobs`). Each query's cycle is its :class:`~.query.QuerySpec`.
2. Fatal means that query's job is ``failed`` (retried on the supervisor's slow schedule); the
   other queries go on. The supervisor reports each query as a job of the source's component
   (``/readyz``) and the component's state as their aggregate.
3. No retry loop and no task group here: sessions raise streamd errors and the supervisor decides.
4. Discovered scopes (``discover``) come from one :class:`~.discovery.ScopeDirectory` shared by
   the queries. Each query's cycle deadline follows what its next cycle will do (the number of
   scopes, a token fetch, a listing: :mod:`.query` rule 9); the poller is built with the usual
   one (its warning about a deadline not below the interval is about that one).
5. The users' worktypes (:class:`~.scope_events.AgentWorkTypes`) are shared too: presence per
   worktype keeps them, channelActivity the queue ids of each worktype's tiles, and the agent
   states carry both as ``queue_ids`` (published again when only those change).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from functools import partial

import anyio
import httpx
from anyio.abc import TaskStatus

from streamd.events import utcnow
from streamd.runtime import Job
from streamd.sources.alvaria.auth import AlvariaAuth
from streamd.sources.alvaria.client import AlvariaClient, RateGate
from streamd.sources.alvaria.config import AlvariaSourceConfig, QueryName
from streamd.sources.alvaria.discovery import ScopeDirectory
from streamd.sources.alvaria.query import Cursor, Delays, QuerySpec
from streamd.sources.alvaria.scope_events import AgentWorkTypes
from streamd.sources.base import Emit, SourceDeps
from streamd.sources.http import tls_verify
from streamd.sources.poller import Poller


class AlvariaSource:
    """Polls the enabled Alvaria queries of one organisation until cancelled."""

    def __init__(
        self,
        config: AlvariaSourceConfig,
        deps: SourceDeps,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], float] | None = None,
        wallclock: Callable[[], datetime] = utcnow,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
        jitter: float = 0.1,
        scope_delays: Delays | None = None,
    ) -> None:
        self.name = config.name
        self.config = config
        self.deps = deps
        self._transport = transport
        self._clock = clock or anyio.current_time
        self._wallclock = wallclock
        self._sleep = sleep
        self._jitter = jitter
        self._scope_delays = scope_delays

    def auth(self) -> AlvariaAuth:
        """The OAuth2 auth shared by every query of this source."""
        c = self.config
        return AlvariaAuth(
            token_url=c.token_url,
            client_id=c.client_id,
            client_secret=c.client_secret.get_secret_value(),
            api_key=c.api_key.get_secret_value(),
            scope=c.scope,
            client_auth=c.client_auth,
            margin=c.token_refresh_margin,
            clock=self._clock,
        )

    async def run(self, emit: Emit, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Run one poller job per enabled query; ready once each has polled, is retrying or failed."""
        c = self.config
        queries = c.enabled_queries()
        timeout = httpx.Timeout(max(c.timeout_of(q) for q in queries))
        verify = tls_verify(c, f"alvaria {c.name}")
        async with httpx.AsyncClient(
            auth=self.auth(), timeout=timeout, transport=self._transport, verify=verify
        ) as http:
            client = AlvariaClient(http, c, RateGate(self._clock))
            directory = ScopeDirectory(client, source=c.name, every=c.discover_every, clock=self._clock)
            work_types = AgentWorkTypes()
            jobs = [
                Job(query, partial(self.poller(query, client, directory, work_types).session, emit))
                for query in queries
            ]
            await self.deps.jobs.run(*jobs, task_status=task_status)

    def poller(
        self,
        query: QueryName,
        client: AlvariaClient,
        directory: ScopeDirectory | None = None,
        work_types: AgentWorkTypes | None = None,
    ) -> Poller[Cursor]:
        """The poller of one query (its cycle deadline follows the discovered scopes, rule 4)."""
        c = self.config
        spec = QuerySpec(
            query,
            config=c,
            client=client,
            clock=self._clock,
            wallclock=self._wallclock,
            delays=self._scope_delays,
            directory=directory,
            work_types=work_types,
        )
        poller = Poller(  # warns when the usual deadline is not below the interval
            spec,
            source=c.name,
            interval=c.interval_of(query),
            timeout=spec.cycle_timeout(steady=True),
            jitter=self._jitter,
            clock=self._clock,
            sleep=self._sleep,
        )
        spec.retime = partial(_retime, poller)
        spec.retime(spec.cycle_timeout())  # the first cycle also fetches the token (and listings)
        return poller


def _retime(poller: Poller[Cursor], timeout: float) -> None:
    poller.timeout = timeout
