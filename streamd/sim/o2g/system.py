"""The simulated O2G's system service (004 L8760-9200): its status, its licences, restarts, HA.

Rules:

1. ``GET /system/status`` (a session is needed; 004 L8810-8838) answers a ``SystemStatus``:
   ``startDate`` (UTC, changes on every :meth:`O2GSystem.restart`), ``ha``, ``primary`` /
   ``secondary`` (the FQDNs of the active and backup servers, swapped by
   :meth:`O2GSystem.switch_primary`), one ``pbxs`` entry per node (``ctiLinkState``) and
   ``license.lics`` (the licences installed, :attr:`O2GSystem.licenses`).
2. ``GET /system/licenses?lic=NAME`` (out of a session too; 004 L8771-8809) answers 204 when the
   licence ``NAME`` is installed, 403 when it is not.
3. A restart or a switchover loses every session (their subscriptions and queues with them), as
   a new O2G process or the backup server taking over does.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from streamd.sim.o2g.guide import error, json_response

if TYPE_CHECKING:
    from streamd.sim.o2g.simulator import O2GSimulator

FLEX_LICENSES: tuple[str, ...] = (
    "ROXE_API_TEL_ADVANCED",
    "ROXE_API_CONTACTCENTER_AGENT",
    "ROXE_API_CONTACTCENTER_SVCS",
    "ROXE_API_PHONESETPROG",
    "ROXE_API_MANAGEMENT",
)
"""The CAPEX (FlexLM) licence names the simulator installs by default (004, each resource's
"Licenses" paragraph)."""


@dataclass
class O2GSystem:
    """What the system service reports of the simulated server."""

    start_date: datetime = field(default_factory=lambda: datetime.now(UTC).replace(microsecond=0))
    ha: bool = False
    primary: str = "o2g-a.sim.local"
    secondary: str = "o2g-b.sim.local"
    licenses: set[str] = field(default_factory=lambda: set(FLEX_LICENSES))

    def restart(self) -> None:
        """A new start date (at least one second later than the last one)."""
        now = datetime.now(UTC).replace(microsecond=0)
        self.start_date = max(now, self.start_date + timedelta(seconds=1))

    def switch_primary(self) -> None:
        """The backup server becomes the active one."""
        self.primary, self.secondary = self.secondary, self.primary

    def status(self, nodes: list[str]) -> dict[str, object]:
        """The ``SystemStatus`` body (rule 1)."""
        body: dict[str, object] = {
            "logicalAddress": {"fqdn": self.primary, "ip": "127.0.0.1"},
            "startDate": self.start_date.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "ha": self.ha,
            "primaryVersion": "2.7.004",
            "pbxs": [
                {"name": f"oxe{node}", "nodeId": int(node), "connected": True, "loaded": True,
                 "ctiLinkState": "CONNECTED_MAIN", "monitoredUserNumber": 0}
                for node in nodes
            ],
            "license": {
                "type": "FLEXLM",
                "lics": [{"name": name, "total": 100, "currentUsed": 0} for name in sorted(self.licenses)],
            },
        }  # fmt: skip
        if self.ha:
            body |= {"primary": self.primary, "secondary": self.secondary, "secondaryVersion": "2.7.004"}
        return body


def system_routes(
    sim: O2GSimulator, base: str, guarded: Callable[[Request], Awaitable[Response | None]]
) -> list[Route]:
    """The system service's routes under ``base`` (rules 1-2)."""

    async def status(request: Request) -> Response:
        return await guarded(request) or json_response(sim.system.status(sim.nodes))

    async def licenses(request: Request) -> Response:
        if failed := await sim.fault(request.url.path):
            return failed
        name = request.query_params.get("lic")
        if not name:
            return error(400, "NOT_FOUND")
        return Response(status_code=204) if name in sim.system.licenses else error(403, "NOT_ALLOWED")

    return [
        Route(f"{base}/system/status", status, methods=["GET"]),
        Route(f"{base}/system/licenses", licenses, methods=["GET"]),
    ]
