"""The simulated Calabrio ONE tenant: agents, their activities, adherence and sessions (no HTTP).

Rules:

1. Everything the routes answer from lives here; :mod:`.app` only reads and writes it. The
   guide's facts (state names, payload guides for deviations) are stated here, never imported
   from the product (a wrong field name must be able to show up as a failing test).
2. Deviations depend only on ``seed``, the input's kind and identity (:meth:`CalabrioWorld.deviated`).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from streamd.sim.calabrio.wfm import SimScheduled, queue_row, team_row
from streamd.sim.deviate import Guide, deviate

STATES = ("LOGGED_OUT", "READY_WAITING", "TALK", "WORK_AFTER_CONTACT", "HOLD", "NOT_READY_BUSY")
_NEXT = {
    "LOGGED_OUT": ("READY_WAITING",),
    "READY_WAITING": ("TALK", "TALK", "NOT_READY_BUSY"),
    "TALK": ("WORK_AFTER_CONTACT", "HOLD", "READY_WAITING"),
    "HOLD": ("TALK",),
    "WORK_AFTER_CONTACT": ("READY_WAITING", "NOT_READY_BUSY"),
    "NOT_READY_BUSY": ("READY_WAITING", "READY_WAITING", "LOGGED_OUT"),
}
ROW_GUIDE = Guide(routing=frozenset({"agentId", "realTimeActivities"}))
"""An agent's activity row (002 L4614-4628): ``agentId`` is its key; its activities deviate on
their own (:data:`ACTIVITY_GUIDE`)."""
ACTIVITY_GUIDE = Guide(routing=frozenset(), enums=frozenset({"agentState"}))
"""One activity: ``agentState`` and ``timestamp`` route it (the window's de-dup key), and every
change :func:`~streamd.sim.deviate.deviate` can make leaves them usable (the timestamp as text,
a state outside the documented list); no field is documented as required beyond those two."""
ADHERENCE_GUIDE = Guide(routing=frozenset({"agentId"}))
"""An adherence row (002 L599-656): ``agentId`` is its key; nothing else is marked required."""
REFERENCE_GUIDE = Guide(routing=frozenset({"agentId"}))
"""An agent reference row (002 L688-739): ``agentId`` identifies it."""
_FIRST = ("Ana", "Ben", "Chloé", "Dev", "Eli", "Fatima", "Gus", "Hana", "Ivo", "Jun")
_LAST = ("Silva", "Okafor", "Martin", "Patel", "Kim", "Haddad", "Berg", "Sato", "Novak", "Li")


def wall_ms() -> int:
    """The current time in epoch milliseconds."""
    return time.time_ns() // 1_000_000


@dataclass(frozen=True, slots=True)
class SimAgent:
    """One simulated agent (reference data)."""

    agent_id: int
    acd_id: str
    first_name: str
    last_name: str
    services: tuple[int, ...] = (1,)
    team_id: int = 3

    def reference(self, *, full: bool = True) -> dict[str, Any]:
        """The Agent API row: every field with ``fullDetail=true``, else the basic detail (002 L680)."""
        if not full:
            return {
                "agentId": self.agent_id,
                "firstName": self.first_name,
                "lastName": self.last_name,
                "employeeNumber": f"E{self.agent_id}",
            }
        return {
            "agentId": self.agent_id,
            "acdId": self.acd_id,
            "active": True,
            "employeeNumber": f"E{self.agent_id}",
            "firstName": self.first_name,
            "lastName": self.last_name,
            "mainTeam": {"teamId": self.team_id, "name": f"Team {self.team_id}"},
            "services": list(self.services),
            "teams": [self.team_id],
            "settings": {"$ref": f"/api/rest/scheduling/agent/{self.agent_id}/settings"},
        }


@dataclass(frozen=True, slots=True)
class SimActivity:
    """One state change, visible from ``visible_at`` (epoch ms) on."""

    timestamp: int
    state: str
    reason_code: str | None
    visible_at: int

    def wire(self) -> dict[str, Any]:
        """As the activity API returns it."""
        return {"agentState": self.state, "reasonCode": self.reason_code, "timestamp": self.timestamp}


def default_agents(count: int, acd_base: int = 5001) -> list[SimAgent]:
    """``count`` agents: ids 101.., ACD ids ``acd_base``.., two services and two teams taken in turn."""
    return [
        SimAgent(
            101 + i, str(acd_base + i), _FIRST[i % 10], _LAST[(i // 10 + i) % 10], (1 + i % 2,), 3 + i % 2
        )
        for i in range(count)
    ]


@dataclass(slots=True)
class CalabrioWorld:
    """The tenant's state. ``auto``: agents change state on their own (the demo)."""

    agents: list[SimAgent]
    clock_ms: Callable[[], int] = wall_ms
    auto: bool = False
    seed: int = 0
    max_late_ms: int = 0
    deviate: float = 0.0
    adherence: dict[int, dict[str, Any]] = field(default_factory=dict)
    activities: dict[int, list[SimActivity]] = field(default_factory=dict)
    sessions: dict[str, list[int]] = field(default_factory=dict)
    """Live session id -> [last use (epoch ms), calls made]."""
    tenant_zone: str = "UTC"
    schedules: dict[int, list[SimScheduled]] = field(default_factory=dict)
    adherence_by_date: dict[str, dict[int, dict[str, Any]]] = field(default_factory=dict)
    """Adherence overrides of one date (over :attr:`adherence`)."""
    contacts: dict[str, Any] = field(
        default_factory=lambda: {"total": "215", "totalWithAudio": 175, "totalWithVideo": 85}
    )
    """The contact monitoring counts (002 L2340-2350; ``total`` as text, as in the seed's example)."""
    deviated_activities: set[tuple[int, int]] = field(default_factory=set)
    deviated_adherence: set[int] = field(default_factory=set)
    deviated: list[str] = field(default_factory=list)
    rng: random.Random = field(default_factory=random.Random)
    next_change: dict[int, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not 0.0 <= self.deviate <= 1.0:
            raise ValueError(f"deviate must be a share between 0 and 1, got {self.deviate}")
        self.rng.seed(self.seed)
        for agent in self.agents:
            self.activities.setdefault(agent.agent_id, [])
        if self.auto:
            now = self.clock_ms()
            for a in self.agents:
                self.add_activity(a.agent_id, now - self.rng.randint(1_000, 60_000), "READY_WAITING")
                self.next_change[a.agent_id] = now + self.rng.randint(1_000, 8_000)

    def add_activity(
        self,
        agent_id: int,
        timestamp: int,
        state: str,
        reason_code: str | None = None,
        *,
        visible_at: int | None = None,
    ) -> None:
        """Record that ``agent_id`` entered ``state`` at ``timestamp`` (visible from ``visible_at``)."""
        rows = self.activities.setdefault(agent_id, [])
        rows.append(
            SimActivity(timestamp, state, reason_code, timestamp if visible_at is None else visible_at)
        )
        rows.sort(key=lambda a: a.timestamp)

    def teams(self) -> list[dict[str, Any]]:
        """Every team an agent belongs to."""
        return [team_row(t) for t in sorted({a.team_id for a in self.agents})]

    def queues(self) -> list[dict[str, Any]]:
        """Every service queue an agent works."""
        return [queue_row(q) for q in sorted({q for a in self.agents for q in a.services})]

    def window(self, agent_id: int, from_ms: int, to_ms: int) -> list[SimActivity]:
        """What the activity API shows of one agent now: the visible activities inside the window
        and, when there are any, the state that began before it (002 L4590-4603)."""
        now = self.clock_ms()
        visible = [a for a in self.activities.get(agent_id, []) if a.visible_at <= now]
        inside = [a for a in visible if from_ms <= a.timestamp < to_ms]
        if not inside:
            return []
        before = [a for a in visible if a.timestamp < from_ms]
        return ([before[-1]] if before else []) + inside

    def current(self, agent_id: int) -> SimActivity | None:
        """The agent's visible state now, if it has one."""
        now = self.clock_ms()
        visible = [a for a in self.activities.get(agent_id, []) if a.visible_at <= now]
        return visible[-1] if visible else None

    def adherence_row(self, agent: SimAgent, day: str | None = None) -> dict[str, Any]:
        """Today's adherence figures of one agent (002 L599-656), with :attr:`adherence` overrides."""
        drift = (self.clock_ms() // 60_000) % 7 if self.auto else 0
        row: dict[str, Any] = {
            "agentId": agent.agent_id,
            "acdAgentId": agent.acd_id,
            "scheduledSeconds": 28_800,
            "scheduledInServiceSeconds": 25_200,
            "actualInServiceSeconds": 20_000 + agent.agent_id + drift * 60,
            "notInAdherenceSeconds": 600 + drift * 30,
            "scheduleAdherence": 92.5 - drift * 0.5,
            "scheduleConformity": 97.1,
            "details": [
                {
                    "scheduledActivityType": "in_service",
                    "scheduledActityStartTime": "2026-01-01T08:00:00Z",
                    "inAdherenceSeconds": 3000,
                    "outOfAdherenceSeconds": 600,
                    "actuals": [
                        {
                            "actualAgentState": "TALK",
                            "actualAgentStateStartTime": "2026-01-01T08:01:00Z",
                            "actualReasonCode": None,
                            "inAdherenceSeconds": 3000,
                            "outOfAdherenceSeconds": 0,
                        }
                    ],
                }
            ],
        }
        row.update(self.adherence.get(agent.agent_id, {}))
        row.update(self.adherence_by_date.get(day or "", {}).get(agent.agent_id, {}))
        return row

    def deviated_copy(
        self, obj: dict[str, Any], guide: Guide, kind: str, *ident: object
    ) -> dict[str, Any] | None:
        """A deviating copy of one input when it is to deviate (``deviate``), else None.

        Decided by ``seed``, ``kind`` and the input's identity only: the same input deviates the
        same way whenever it is served.
        """
        if self.deviate <= 0.0:
            return None
        rng = random.Random(":".join(map(str, (self.seed, kind, *ident))))
        if rng.random() >= self.deviate:
            return None
        out, path = deviate(obj, rng, guide)
        self.deviated.append(path)
        return out

    def tick(self) -> None:
        """Auto mode: move agents through plausible state sequences up to now."""
        if not self.auto:
            return
        now = self.clock_ms()
        for agent in self.agents:
            while self.next_change[agent.agent_id] <= now:
                at = self.next_change[agent.agent_id]
                rows = self.activities[agent.agent_id]
                state = self.rng.choice(_NEXT[rows[-1].state if rows else "LOGGED_OUT"])
                reason = str(self.rng.choice((1, 2, 7))) if state == "NOT_READY_BUSY" else None
                late = self.rng.randint(0, self.max_late_ms)
                self.add_activity(agent.agent_id, at, state, reason, visible_at=at + late)
                self.next_change[agent.agent_id] = at + self.rng.randint(2_000, 20_000)
