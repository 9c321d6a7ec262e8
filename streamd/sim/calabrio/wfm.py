"""The simulated tenant's WFM data beyond agents: teams, service queues and schedules (the
guide's facts stated here, never imported from the product)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from datetime import time as dtime
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

if TYPE_CHECKING:
    from streamd.sim.calabrio.world import CalabrioWorld


@dataclass(frozen=True, slots=True)
class SimScheduled:
    """One scheduled activity (Schedule Details, 002 L4939-4997)."""

    type: str
    start_ms: int
    end_ms: int
    label: str | None = None
    detail: str | None = None
    queue_id: int | None = None

    def wire(self) -> dict[str, Any]:
        """As the schedule API returns it (times as text, as in the seed's example)."""
        return {
            "activityType": self.type,
            "activityTypeLabel": self.label or self.type.replace("_", " ").title(),
            "activityDetailName": self.detail,
            "serviceQueueId": self.queue_id,
            "startTime": str(self.start_ms),
            "endTime": str(self.end_ms),
            "paid": True,
            "activityMetadata": None,
        }


QUEUE_NAMES = {1: "Sales", 2: "Support", 3: "Billing"}
"""Names of the simulated service queues (an agent's ``services`` are their ids)."""


def team_row(team_id: int) -> dict[str, Any]:
    """A team as the Team (with Scope) API lists it (002 L4496-4530: ``name``, ``GroupId``)."""
    return {"id": team_id, "name": f"Team {team_id}", "groupId": 1}


def queue_row(queue_id: int) -> dict[str, Any]:
    """A service queue as the Service API lists it (002 L5100-5140)."""
    return {
        "id": queue_id,
        "number": 7000 + queue_id,
        "name": QUEUE_NAMES.get(queue_id, f"Queue {queue_id}"),
        "priority": 0,
        "virtual": False,
        "color": "#7399BD",
        "type": 0,
        "typeDesc": "Voice",
    }


def schedule_rows(world: CalabrioWorld, from_date: str, to_date: str) -> list[dict[str, Any]]:
    """Schedule Details of the agents with a schedule: every activity with any part in the
    dates (tenant zone), whole (002 L4949-4952), listed under the date it starts on."""
    zone = ZoneInfo(world.tenant_zone)
    start = int(datetime.combine(date.fromisoformat(from_date), dtime(), zone).timestamp() * 1000)
    end_day = date.fromisoformat(to_date) + timedelta(days=1)
    end = int(datetime.combine(end_day, dtime(), zone).timestamp() * 1000)
    rows = []
    for agent in world.agents:
        by_date: dict[str, list[dict[str, Any]]] = {}
        for a in world.schedules.get(agent.agent_id, []):
            if a.start_ms < end and a.end_ms > start:
                day = datetime.fromtimestamp(a.start_ms / 1000, zone).date().isoformat()
                by_date.setdefault(day, []).append(a.wire())
        if by_date:
            days = [{"date": d, "scheduledActivities": acts} for d, acts in sorted(by_date.items())]
            rows.append(
                {
                    "agentId": agent.agent_id,
                    "employeeID": f"E{agent.agent_id}",
                    "agentTimeZone": world.tenant_zone,
                    "activitiesByDate": days,
                }
            )
    return rows
