"""What a test scripts to go wrong on the Xima simulator (never random).

Rules:

1. :class:`XimaFaults` is the shared :class:`~streamd.sim.script.FaultScript` keyed by endpoint:
   ``metrics``, ``values``, ``mapping``, ``historic`` (or ``historic:{key}`` for one report),
   ``ws`` (the upgrade: only the fault's status is used). A scripted answer comes before the
   Bearer check, as a proxy's would.
2. Besides the script: ``rejected`` (metric id -> 403/404 for any list containing it; the
   websocket answers 403), ``websocket_enabled`` (False: the upgrade answers 404), ``rest_lag``
   (REST answers values this many versions behind the socket, as a REST node that lags the
   realtime feed does), ``reports_without_rows`` (the next historic answers lack their ``rows``)
   and :meth:`XimaFaults.plan_websocket` (per connection: refuse with a status, close after N
   messages, never answer pings).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from streamd.sim.script import FaultScript


@dataclass(frozen=True, slots=True)
class WsPlan:
    """What the next websocket connection does: reject, close after N messages, or never pong."""

    reject: int | None = None
    close_after: int | None = None
    never_pong: bool = False


class XimaFaults(FaultScript):
    """The simulator's fault script plus its Xima-specific knobs (module rules)."""

    def __init__(self) -> None:
        super().__init__()
        self.rejected: dict[str, int] = {}
        self.websocket_enabled = True
        self.rest_lag = 0
        """REST values answers serve each value this many versions behind the current one."""
        self.reports_without_rows = 0
        """The next this many historic answers come without their ``rows`` array."""
        self.plans: deque[WsPlan] = deque()

    def plan_websocket(self, *plans: WsPlan) -> None:
        """Script the next websocket connections, one plan each (later ones behave normally)."""
        self.plans.extend(plans)

    def next_plan(self) -> WsPlan:
        """The plan of the connection being opened."""
        return self.plans.popleft() if self.plans else WsPlan()

    def take_missing_rows(self) -> bool:
        """True when this historic answer is to lack its ``rows`` (uses one of them)."""
        if self.reports_without_rows:
            self.reports_without_rows -= 1
            return True
        return False
