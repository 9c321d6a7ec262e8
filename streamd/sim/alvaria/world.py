"""The simulated Alvaria contact centre behind the queries (pure: no HTTP; time comes from the caller).

Rules:

1. :class:`AlvariaWorld` changes only in :meth:`AlvariaWorld.step` (random, seeded, driven by the
   caller's clock) or through its explicit mutators, so tests can script exact snapshots.
2. Teams, worktypes and contact lists can be added and removed while it runs (what the
   provisioning and campaign-list endpoints then answer); a removed team's agents leave with it.
"""

from __future__ import annotations

import itertools
import math
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from streamd.sim.alvaria.guide import CHANNELS, STATE_NAMES, TEAM_COUNT_FIELDS, TEAM_COUNTERS

FIRST = ("Ana", "Ben", "Chen", "Dara", "Eli", "Fay", "Gus", "Hana", "Ivo", "Jo", "Kim", "Lea")
LAST = ("Smith", "Okafor", "Nguyen", "Garcia", "Kowalski", "Rossi", "Haddad", "Ito")


def iso(epoch: float) -> str:
    """``yyyy-MM-ddTHH:mm:ssZ`` as the seed prints UTC times."""
    return datetime.fromtimestamp(int(epoch), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(slots=True)
class Agent:
    """One simulated agent."""

    user_id: str
    first: str
    last: str
    team_id: str
    work_type_id: str
    """The worktype whose channelActivity counts this agent's interactions."""
    work_types: set[str] = field(default_factory=set)
    """Every worktype the agent is associated with (presence ``workTypeId``); one or more."""
    state_id: str = "idle"
    reason_id: str = ""
    state_start: float = 0.0
    sign_on: float = 0.0
    session_id: int = 0
    logged_on: bool = True
    interactions: int = 0


@dataclass(slots=True)
class Queue:
    """One worktype x channel's waiting interactions."""

    waiting: int = 0
    oldest: float = 0.0
    self_service: int = 0


class AlvariaWorld:
    """The simulated contact centre behind the queries (pure; time comes from the caller)."""

    def __init__(
        self,
        *,
        agents: int = 20,
        teams: int = 2,
        work_types: int = 2,
        contact_lists: tuple[str, ...] = ("Leads", "Renewals"),
        seed: int = 1,
        now: float = 0.0,
        mean_state_seconds: float = 20.0,
    ) -> None:
        self.rng = random.Random(seed)
        self.team_ids = [f"team{t + 1}" for t in range(teams)]
        self.team_names = {t: f"Team {i + 1}" for i, t in enumerate(self.team_ids)}
        self.work_type_ids = [f"wt{w + 1}.104" for w in range(work_types)]
        self.contact_lists = list(contact_lists)
        self.mean_state_seconds = mean_state_seconds
        self.last_step = now
        self._sessions = itertools.count(2323)
        self.agents: dict[str, Agent] = {}
        for i in range(agents):
            self.add_agent(f"agent{i + 1:05d}", now=now, index=i)
        self.queues = {(w, c[0]): Queue() for w in self.work_type_ids for c in CHANNELS}
        self.lists = {name: [1000 * (i + 1), 0, 0, 0] for i, name in enumerate(self.contact_lists)}

    def add_agent(
        self, user_id: str, *, now: float, index: int | None = None, team_id: str | None = None
    ) -> Agent:
        """Sign a new agent on (idle)."""
        i = len(self.agents) if index is None else index
        team = team_id or self.team_ids[i % len(self.team_ids)]
        work_types = self.work_type_ids
        home = work_types[i % len(work_types)]
        agent = Agent(
            user_id=user_id,
            first=FIRST[i % len(FIRST)],
            last=LAST[(i // len(FIRST)) % len(LAST)],
            team_id=team,
            work_type_id=home,
            work_types={home},
            state_start=now,
            sign_on=now,
            session_id=next(self._sessions),
        )
        if i % 3 == 0:  # a third of the agents also serve the next worktype, as real users do
            agent.work_types.add(work_types[(i + 1) % len(work_types)])
        self.agents[user_id] = agent
        return agent

    def assign(self, user_id: str, work_type_id: str) -> None:
        """Associate an agent with one more worktype (it appears on that worktype's presence list)."""
        self.agents[user_id].work_types.add(work_type_id)

    def unassign(self, user_id: str, work_type_id: str) -> None:
        """Drop an agent's association with one worktype; it stays logged on for the others."""
        self.agents[user_id].work_types.discard(work_type_id)

    def set_state(self, user_id: str, state_id: str, *, now: float, reason_id: str = "") -> None:
        """Move one agent to ``state_id`` (``loggedoff`` also removes them from presence)."""
        agent = self.agents[user_id]
        agent.state_id, agent.reason_id, agent.state_start = state_id, reason_id, now
        agent.interactions = 1 if state_id in ("active", "held", "wrap") else 0
        if state_id == "loggedoff":
            agent.logged_on = False
        elif not agent.logged_on:
            agent.logged_on, agent.sign_on, agent.session_id = True, now, next(self._sessions)

    def remove_agent(self, user_id: str) -> None:
        """Drop an agent entirely (gone from every query)."""
        del self.agents[user_id]

    def add_team(self, team_id: str, name: str | None = None) -> None:
        """A new team (listed by provisioning/teams, answered by teamActivity / userActivity)."""
        if team_id not in self.team_ids:
            self.team_ids.append(team_id)
        self.team_names[team_id] = name or team_id.title()

    def remove_team(self, team_id: str) -> None:
        """Delete a team: gone from provisioning/teams, its queries answer 404, its agents leave."""
        self.team_ids.remove(team_id)
        self.team_names.pop(team_id, None)
        for user_id in [a.user_id for a in self.agents.values() if a.team_id == team_id]:
            self.remove_agent(user_id)

    def add_work_type(self, work_type_id: str) -> None:
        """A new worktype with its channel queues (listed by provisioning/workTypes)."""
        if work_type_id not in self.work_type_ids:
            self.work_type_ids.append(work_type_id)
        for channel in CHANNELS:
            self.queues.setdefault((work_type_id, channel[0]), Queue())

    def remove_work_type(self, work_type_id: str) -> None:
        """Delete a worktype: gone from provisioning/workTypes; channelActivity answers 404."""
        self.work_type_ids.remove(work_type_id)
        for channel in CHANNELS:
            self.queues.pop((work_type_id, channel[0]), None)
        for agent in self.agents.values():
            agent.work_types.discard(work_type_id)

    def teams(self) -> list[dict[str, Any]]:
        """The provisioning/teams items (``id``, ``name``)."""
        return [{"id": t, "name": self.team_names.get(t, t)} for t in self.team_ids]

    def work_types(self) -> list[dict[str, Any]]:
        """The provisioning/workTypes items (``id``, ``name``)."""
        return [{"id": w, "name": f"Worktype {w}"} for w in self.work_type_ids]

    def campaign_lists(self) -> list[dict[str, Any]]:
        """The campaign/lists ``contactLists`` items (003 L49: ``contactLists[x].name``)."""
        return [{"name": name} for name in self.lists]

    def step(self, now: float) -> None:
        """Advance the world to ``now``: agents change state, queues and lists move."""
        dt = max(0.0, now - self.last_step)
        self.last_step = now
        if dt == 0:
            return
        p = 1.0 - math.exp(-dt / self.mean_state_seconds)
        for agent in self.agents.values():
            if self.rng.random() < p:
                self._transition(agent, now)
        for queue in self.queues.values():
            queue.waiting = max(0, queue.waiting + self.rng.choice((-1, 0, 0, 1)))
            queue.self_service = max(0, queue.self_service + self.rng.choice((-1, 0, 1)))
            if queue.waiting == 0:
                queue.oldest = 0.0
            elif queue.oldest == 0.0:
                queue.oldest = now - self.rng.uniform(0, 30)
        for counters in self.lists.values():
            dialled = self.rng.randint(0, 3)
            counters[1] += dialled
            counters[2] = self.rng.randint(0, 20)
            counters[3] = self.rng.randint(0, 5)

    def _transition(self, agent: Agent, now: float) -> None:
        nxt = {
            "idle": ("active", "active", "notready"),
            "active": ("wrap", "held"),
            "held": ("active",),
            "wrap": ("idle",),
            "notready": ("idle", "idle", "loggedoff"),
            "loggedoff": ("idle",),
        }
        state = self.rng.choice(nxt.get(agent.state_id, ("idle",)))
        reason = self.rng.choice(("break", "lunch", "training")) if state == "notready" else ""
        self.set_state(agent.user_id, state, now=now, reason_id=reason)

    def user_rows(self, team_id: str, now: float, tz: str = "Z") -> list[dict[str, Any]]:
        """userActivity rows of one team."""
        return [self._user_row(a, now) for a in self.agents.values() if a.team_id == team_id and a.logged_on]

    def _user_row(self, a: Agent, now: float) -> dict[str, Any]:
        return {
            "userId": a.user_id,
            "teamId": a.team_id,
            "preferredName": f"{a.first} {a.last}",
            "teamName": self.team_names.get(a.team_id, a.team_id),
            "signOnTime": iso(a.sign_on),
            "stateId": a.state_id,
            "stateName": STATE_NAMES.get(a.state_id, a.state_id.title()),
            "stateStartTime": iso(a.state_start),
            "reasonId": a.reason_id,
            "reasonName": a.reason_id.title(),
            "interactionCount": a.interactions,
            "signOnTimeLocal": iso(a.sign_on),
            "stateStartTimeLocal": iso(a.state_start),
            "stateDur": int(now - a.state_start),
            "signOnDur": int(now - a.sign_on),
        }

    def team_rows(self, team_id: str) -> list[dict[str, Any]]:
        """teamActivity rows (one per team)."""
        row: dict[str, Any] = {"teamId": team_id, "teamName": self.team_names.get(team_id, team_id)}
        row |= dict.fromkeys(TEAM_COUNT_FIELDS, 0)
        for a in self.agents.values():
            if a.team_id == team_id and a.logged_on and a.state_id in TEAM_COUNTERS:
                row[TEAM_COUNTERS[a.state_id]] += 1
        return [row]

    def channel_rows(self, work_type_id: str, now: float) -> list[dict[str, Any]]:
        """channelActivity rows of one worktype (one per interaction type and channel)."""
        rows = []
        for type_id, channel_id, type_name, channel_name in CHANNELS:
            queue = self.queues.get((work_type_id, type_id), Queue())
            mine = [a for a in self.agents.values() if a.work_type_id == work_type_id and a.logged_on]
            busy = sum(1 for a in mine if a.state_id == "active") if channel_id == "voice" else 0
            rows.append(
                {
                    "interactionTypeId": type_id,
                    "channelTypeId": channel_id,
                    "workTypeId": work_type_id,
                    "interactionTypeName": type_name,
                    "channelTypeName": channel_name,
                    "workTypeName": f"Worktype {work_type_id}",
                    "dialCount": 0,
                    "activeCount": busy,
                    "queueCount": queue.waiting,
                    "selfServiceCount": queue.self_service,
                    "previewCount": 0,
                    "holdCount": sum(1 for a in mine if a.state_id == "held") if channel_id == "voice" else 0,
                    "inactiveCount": 0,
                    "wrapCount": sum(1 for a in mine if a.state_id == "wrap") if channel_id == "voice" else 0,
                    "ringCount": 0,
                    "longestWaitingQueueTime": iso(queue.oldest) if queue.waiting else "",
                    "selfServiceDur": queue.self_service * 12,
                    "queueDur": int(queue.waiting * (now - queue.oldest)) if queue.waiting else 0,
                    "activeDur": busy * 60,
                    "previewDur": 0,
                    "maxQueueDur": int(now - queue.oldest) if queue.waiting else 0,
                }
            )
        return rows

    def list_row(self, name: str) -> dict[str, Any]:
        """listActivity's single object for one contact list."""
        total, attempted, active, busy = self.lists[name]
        penetration = min(100, 100 * attempted // max(total, 1))
        return {
            "kind": "via#listActivity",
            "contactList": name,
            "recordsAvailable": max(0, total - attempted),
            "recordsAttempted": attempted,
            "recordsInActive": active,
            "callsBusy": busy,
            "passcountPenetration": penetration,
            "passcountSaturation": min(100, penetration + busy),
            "listPenetration": penetration,
            "listSaturation": min(100, penetration + busy),
        }

    def presence_users(self, work_type_id: str | None = None) -> list[dict[str, Any]]:
        """presence ``users``: every logged-on agent (of one worktype when given)."""
        return [
            {
                "userId": a.user_id,
                "firstName": a.first,
                "lastName": a.last,
                "ehubSessionId": a.session_id,
                "emailAddress": f"{a.user_id}@example.com",
            }
            for a in self.agents.values()
            if a.logged_on and (work_type_id is None or work_type_id in a.work_types)
        ]
