"""The simulated O2G's directory reads: users, agent configurations, withdraw reasons.

Rules:

1. ``GET /users/{loginName}`` (004 L1268-1318) answers a ``User`` for each simulated agent:
   ``companyPhone`` = the login without its ``oxe`` prefix (the device the traffic uses), a
   ``firstName`` and ``lastName`` picked from short lists by that number (the same every time);
   an unknown login gets 404 ``NOT_FOUND``.
2. ``GET /acd/agent/config?loginName=`` (004 L13140-13170) answers an ``AgentConfig`` whose
   ``processingGroups`` are the agent's current group (preferred) and :attr:`O2GDirectory.groups`.
3. ``GET /acd/agent/withdrawReasons?pgNumber=&loginName=`` (004 L13054-13100) answers the
   group's ``WithdrawReasons`` (:attr:`O2GDirectory.reasons`, indexes and counts written as
   strings, as the seed's example); an administrator session must name the login, and the
   group must be one an agent is in: else 400 ``NOT_FOUND`` ("missing or bad parameter").
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from streamd.sim.o2g.guide import error, json_response

if TYPE_CHECKING:
    from streamd.sim.o2g.simulator import O2GSimulator


FIRST_NAMES = (
    "Ada",
    "Grace",
    "Alan",
    "Edsger",
    "Barbara",
    "Donald",
    "Frances",
    "Ken",
    "Radia",
    "Tony",
    "Margaret",
)
LAST_NAMES = (
    "Lovelace",
    "Hopper",
    "Turing",
    "Dijkstra",
    "Liskov",
    "Knuth",
    "Allen",
    "Thompson",
    "Perlman",
    "Hoare",
)


@dataclass
class O2GDirectory:
    """What the directory reads answer beyond the agents' own state.

    Attributes:
        reasons: processing group -> reason index -> label (``"*"``: every other group).
        groups: login -> the agent's processing groups besides its current one.
    """

    reasons: dict[str, dict[int, str]] = field(
        default_factory=lambda: {"*": {1: "Lunch", 2: "Meeting", 3: "coffee break"}}
    )
    groups: dict[str, list[str]] = field(default_factory=dict)

    def user(self, login: str) -> dict[str, Any]:
        """The ``User`` of agent ``login`` (rule 1)."""
        number = login.removeprefix("oxe")
        n = int(number) if number.isdigit() else len(number)
        first, last = FIRST_NAMES[n % len(FIRST_NAMES)], LAST_NAMES[n // len(FIRST_NAMES) % len(LAST_NAMES)]
        return {"companyPhone": number, "firstName": first, "lastName": last,
                "loginName": login, "apiRights": [], "nodeId": "1"}  # fmt: skip

    def withdraw_reasons(self, group: str) -> dict[str, Any]:
        """The ``WithdrawReasons`` of ``group`` (rule 3)."""
        labels = self.reasons.get(group, self.reasons.get("*", {}))
        reasons = [{"index": str(i), "label": label} for i, label in sorted(labels.items())]
        return {"number": str(len(reasons)), "reasons": reasons}


def directory_routes(
    sim: O2GSimulator, base: str, guarded: Callable[[Request], Awaitable[Response | None]]
) -> list[Route]:
    """The directory reads' routes under ``base`` (module rules)."""

    async def user(request: Request) -> Response:
        if failed := await guarded(request):
            return failed
        login = request.path_params["login"]
        return json_response(sim.directory.user(login)) if login in sim.agents else error(404, "NOT_FOUND")

    async def config(request: Request) -> Response:
        if failed := await guarded(request):
            return failed
        login = request.query_params.get("loginName", "")
        state = sim.agents.get(login)
        if state is None:
            return error(400, "NOT_FOUND")
        groups = [state["pgNumber"], *sim.directory.groups.get(login, [])]
        return json_response(
            {"type": "AGENT", "processingGroups": {"preferred": state["pgNumber"], "groups": groups}}
        )

    async def reasons(request: Request) -> Response:
        if failed := await guarded(request):
            return failed
        group, login = request.query_params.get("pgNumber", ""), request.query_params.get("loginName")
        if login is None:
            return error(400, "NOT_FOUND")  # an administrator must name the agent
        member = {a.get("pgNumber") for a in sim.agents.values()} | {
            g for gs in sim.directory.groups.values() for g in gs
        }
        return (
            json_response(sim.directory.withdraw_reasons(group))
            if group in member
            else error(400, "NOT_FOUND")
        )

    return [
        Route(f"{base}/users/{{login}}", user, methods=["GET"]),
        Route(f"{base}/acd/agent/config", config, methods=["GET"]),
        Route(f"{base}/acd/agent/withdrawReasons", reasons, methods=["GET"]),
    ]
