"""A real Alvaria Cloud reporting server on loopback: OAuth2 token endpoint plus the five queries,
and the scope lists the guide points at (provisioning teams and workTypes, campaign lists).

Rules:

1. :class:`AlvariaWorld` (:mod:`.world`) is the pure data model (N agents in teams, worktypes,
   contact lists); it changes only in :meth:`AlvariaWorld.step` (random, seeded, driven by the
   injected clock) or through its explicit mutators, so tests can script exact snapshots; teams,
   worktypes and lists can be added and removed while it runs.
2. :class:`AlvariaSimulator` (:mod:`.simulator`) serves it with starlette + uvicorn on
   ``127.0.0.1:0`` (``async with AlvariaSimulator() as sim: sim.url``). Paths and bodies follow
   seed 003 (:mod:`.app`): token at ``/tokenservice/oauth2/access_token``, queries under
   ``/via/v2/organizations/{orgId}``, and ``provisioning/teams``, ``provisioning/workTypes`` and
   ``campaign/lists`` there too (the guide names them, 003 L49, L111, L256, without documenting
   them: each answers one page ``{"kind", "totalItems", "teams" | "workTypes" | "contactLists"}``
   of ``{"id", "name"}`` items, lists ``{"name"}``).
3. It enforces what the real API requires: a valid, unexpired bearer token (401 otherwise; presence
   answers 401 without a body), the ``x-api-key`` (403 otherwise), the scope parameters (400).
4. Faults are scripted on :attr:`AlvariaSimulator.faults`, the shared
   :class:`~streamd.sim.script.FaultScript`, keyed per query, per scope or for any request
   (:func:`~.faults.where`); :func:`~.faults.error` answers with the guide's error body
   (``ErrorResponse`` / ``ErrorResponseObj``) and optional ``Retry-After``; ``times=None`` makes an
   outage of one scope. Tokens can be expired or revoked at any time,
   :meth:`~AlvariaSimulator.refuse_client` makes the token endpoint refuse the client for good
   (401 ``invalid_client``) until it is switched back, and ``token_latency`` makes it slow. Every
   request lands in :attr:`AlvariaSimulator.log` (the shared
   :class:`~streamd.sim.script.RequestLog`) stamped by the injected clock.
5. ``deviate`` (0..1, default 0) makes that share of the rows of every answer deviate from seed 003
   the way real servers do (:func:`deviate_row`). Key fields are never touched, so every row stays
   routable. Which rows deviate, and how, is a pure function of ``seed``, the query and the row
   key (deterministic whatever the order of requests); :attr:`AlvariaSimulator.deviations`
   records the JSON paths of each deviating row last served. :meth:`~AlvariaSimulator.omit`
   serves rows without some fields (every data-query field is optional in the guide, the row
   keys too).
6. The world follows the guide where it matters to a client: a user can be associated with several
   worktypes (presence per ``workTypeId`` lists them under each), and can lose one association
   while staying logged on (:meth:`AlvariaWorld.unassign`).
7. The simulator states the guide's fields itself (:mod:`.guide`: :data:`GUIDE_FIELDS`,
   :data:`ROW_KEYS`) and never imports the product's tables, so a field name the product gets
   wrong fails a test.
8. ``python -m streamd.sim.alvaria --help`` lists the options; ``--port N`` serves and prints the
   source's config block.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
from anyio.abc import TaskStatus

from streamd.sim.alvaria.app import build_app
from streamd.sim.alvaria.faults import ANY, deviate_row, error, query_of, row_key, scope_of, where
from streamd.sim.alvaria.guide import (
    CHANNELS,
    ERROR_TEXT,
    GUIDE_FIELDS,
    QUERIES,
    ROW_KEYS,
    SCOPE_FIELDS,
    SCOPE_PARAMS,
    TEAM_COUNT_FIELDS,
    TEAM_COUNTERS,
    TOKEN_PATH,
)
from streamd.sim.alvaria.simulator import AlvariaSimulator
from streamd.sim.alvaria.world import Agent, AlvariaWorld, Queue, iso
from streamd.sim.script import Fault, LoggedRequest

__all__ = [
    "ANY",
    "CHANNELS",
    "ERROR_TEXT",
    "GUIDE_FIELDS",
    "QUERIES",
    "ROW_KEYS",
    "SCOPE_FIELDS",
    "SCOPE_PARAMS",
    "TEAM_COUNTERS",
    "TEAM_COUNT_FIELDS",
    "TOKEN_PATH",
    "Agent",
    "AlvariaSimulator",
    "AlvariaWorld",
    "Fault",
    "LoggedRequest",
    "Queue",
    "build_app",
    "demo",
    "deviate_row",
    "error",
    "iso",
    "query_of",
    "row_key",
    "scope_of",
    "serve_forever",
    "where",
]


async def serve_forever(
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    agents: int = 50,
    token_ttl: float = 300.0,
    deviate: float = 0.0,
    task_status: TaskStatus[AlvariaSimulator] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Run a simulator until cancelled (for ``streamd demo``); ``task_status`` gets the simulator.

    Use ``sim = await tg.start(serve_forever)`` and put ``sim.source_config()`` in the demo config.
    """
    async with AlvariaSimulator(
        agents=agents, token_ttl=token_ttl, deviate=deviate, host=host, port=port
    ) as sim:
        task_status.started(sim)
        await anyio.sleep_forever()


@asynccontextmanager
async def demo(agents: int) -> AsyncIterator[dict[str, Any]]:
    """``streamd demo``'s hook: start a simulator, yield the ``kind: alvaria`` config block for it.

    Polls all five queries every 2 s with 2-minute tokens, so the demo also shows token refreshes;
    presence per worktype, so that the agents carry their worktypes' queue ids (a worktype tile's
    ``?queue=`` link shows its agents).
    """
    async with AlvariaSimulator(agents=agents, token_ttl=120.0) as sim:
        work_types = list(sim.world.work_type_ids)
        yield sim.source_config("alvaria1", interval="2s", presence_work_type_ids=work_types)
