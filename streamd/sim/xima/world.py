"""The simulated contact centre behind the Xima simulator: values, reports and calls (no HTTP).

Rules:

1. Deterministic (``seed``): the values change only in :meth:`XimaWorld.step`; reports are a
   function of (report key, timeframe start, agent); finished calls are numbered in order.
2. Every value key keeps its last versions (:meth:`XimaWorld.rest_value` serves older ones to
   a lagging REST node); a category value an admin removed (:meth:`XimaWorld.drop_category`)
   keeps changing underneath but is no longer listed.
3. Late data: rows a test adds to :attr:`XimaWorld.late` for a timeframe appear in every later
   run of that timeframe's report (as rows that arrive after the period was first exported).
4. A call ends when an agent leaves ``Talking``: the world records one call record (the call
   data a WebService Integration profile can send, seed 000 L1030-1062) in :attr:`XimaWorld.calls`,
   which keeps the last ``calls_kept`` (:data:`CALLS_KEPT`) only: a simulator that runs for days
   holds no more; :attr:`XimaWorld.finished_calls` counts them all (and numbers them).
"""

from __future__ import annotations

import random
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from streamd.sim.xima.reports import agent_talking_summary, hms

Key = tuple[str, str | None]
TZ = timezone(timedelta(hours=-6))  # the seed's examples use -06:00
AGENT_NAMES = [
    "Alice Adams",
    "Bob Brown",
    "Carol Clark",
    "Dave Davis",
    "Eve Evans",
    "Frank Ford",
    "Grace Green",
    "Hank Hill",
    "Ivy Irwin",
    "Jack Jones",
]
STATES = ["Available", "Talking", "Wrap Up", "Not Ready", "Available", "Talking"]
DIRECTIONS = ("Inbound", "Outbound", "Internal")


@dataclass(frozen=True, slots=True)
class SimMetric:
    """One API-enabled metric of the simulator."""

    metric_id: str
    name: str
    category_type: str
    value_type: str


METRICS = (
    SimMetric("K0STATE1", "Agent State", "AGENT", "STRING"),
    SimMetric("K0ONCALL", "Agent On Call", "AGENT", "BOOLEAN"),
    SimMetric("K0TALKMS", "Agent Talk Time", "AGENT", "DURATION"),
    SimMetric("K0QUEUED", "Calls in Queue", "GROUP", "COUNT"),
    SimMetric("K0AVGWT1", "Average Wait", "GROUP", "AVERAGE_DURATION"),
    SimMetric("K0LONGWT", "Longest Wait", "NONE", "DURATION"),  # EMPTY while nobody waits
    SimMetric("K0DIRCNT", "Calls by Direction", "CALL_DIRECTION", "COUNT"),
    SimMetric("K0NOTICE", "Site Notice", "NONE", "STRING"),
)
CALLS_KEPT = 1000
"""How many finished calls :attr:`XimaWorld.calls` keeps (rule 4)."""
GROUP_STATE_PREFIX = "K0GS"
"""Agent-group metrics: one AGENT ``Agent State`` metric per group, listing that group's agents."""


class XimaWorld:
    """Agents, groups, their metric values, historic reports and finished calls."""

    def __init__(
        self,
        *,
        agents: int = 4,
        groups: tuple[str, ...] = ("Sales", "Support"),
        seed: int = 1,
        now_ms: Callable[[], int] | None = None,
        group_state_metrics: bool = False,
        calls_kept: int = CALLS_KEPT,
    ) -> None:
        self.agents = [
            f"{AGENT_NAMES[i % 10]}{f' {i // 10 + 1}' if i >= 10 else ''}({201 + i})" for i in range(agents)
        ]
        self.groups = list(groups)
        self.metrics = {m.metric_id: m for m in METRICS}
        self.members: dict[str, list[str]] = {}
        """Group -> agents (agent i belongs to group i mod n; the first agent to every group)."""
        self.group_states: dict[str, str] = {}
        """Agent-group metric id -> its group (``group_state_metrics``)."""
        for i, group in enumerate(self.groups):
            self.members[group] = [
                a for j, a in enumerate(self.agents) if j % len(self.groups) == i or j == 0
            ]
            if group_state_metrics:
                metric_id = f"{GROUP_STATE_PREFIX}{i:04d}"
                self.metrics[metric_id] = SimMetric(metric_id, f"{group} Agent State", "AGENT", "STRING")
                self.group_states[metric_id] = group
        self.values: dict[Key, dict[str, Any]] = {}
        self.dropped: set[Key] = set()
        self.late: dict[str, list[str]] = {}
        """Timeframe start -> agents whose report rows arrived late (added after a first run)."""
        self.calls: deque[dict[str, str]] = deque(maxlen=calls_kept)
        """The last ``calls_kept`` finished calls' records, in order (rule 4)."""
        self.finished_calls = 0
        """How many calls finished (the last one's ``callId`` is ``100000 + finished_calls``)."""
        self.seen: Counter[Key] = Counter()
        """How often each key was requested (its initialization, :meth:`ready`)."""
        self._versions: dict[Key, deque[dict[str, Any]]] = {}
        self._now_ms = now_ms or (lambda: int(time.time() * 1000))
        self._rng = random.Random(seed)
        self._state: dict[str, str] = {}
        self._talk_since: dict[str, int] = {}
        self._populate()

    # ------------------------------------------------------------------ reading

    def keys_of(self, metric_id: str) -> list[Key]:
        """The value keys of one metric."""
        return [k for k in self.values if k[0] == metric_id]

    def current(self, key: Key) -> dict[str, Any]:
        """The newest version of a key (also of a dropped one)."""
        return self._versions[key][-1]

    def rest_value(self, key: Key, lag: int = 0) -> dict[str, Any]:
        """The value a REST answer serves: the current one, or ``lag`` versions older."""
        versions = self._versions.get(key)
        if not lag or not versions:
            return self.values[key]
        return versions[max(0, len(versions) - 1 - lag)]

    def ready(self, key: Key, init_requests: int) -> bool:
        """Count one request of ``key``; True once it was requested more than ``init_requests`` times."""
        self.seen[key] += 1
        return self.seen[key] > init_requests

    def reinitialize(self, key: Key | None = None) -> None:
        """Forget the initialization of ``key`` (every key: as after a long gap without requests)."""
        if key is None:
            self.seen.clear()
        else:
            self.seen[key] = 0

    @staticmethod
    def entry(key: Key, value: dict[str, Any]) -> dict[str, Any]:
        """A ``{key, value}`` entry as the API prints it."""
        k: dict[str, Any] = {"metricId": key[0]}
        if key[1] is not None:
            k["categoryValue"] = key[1]
        return {"key": k, "value": value}

    def mapping(self) -> dict[str, str]:
        """``GET /agents/mapping``: alias -> ``"Name (ext)"`` (the seed prints a space)."""
        body = {}
        for agent in self.agents:
            name, ext = agent[:-1].split("(")
            first, _, last = name.partition(" ")
            body[(first[0] + last).lower().replace(" ", "")] = f"{name} ({ext})"
        return body

    # ------------------------------------------------------------------ changing

    def set(self, key: Key, value: dict[str, Any]) -> None:
        """Store a new version of ``key`` (stamped now)."""
        value["lastUpdateTime"] = self._stamp()
        self._versions.setdefault(key, deque(maxlen=8)).append(value)
        if key not in self.dropped:  # the contact centre goes on; the metric no longer shows it
            self.values[key] = value

    def drop_category(self, key: Key) -> None:
        """Remove one category value from its metric (the admin edited the Category Selection):
        it is no longer listed by the metric list, the values answers or the socket."""
        self.dropped.add(key)
        del self.values[key]

    def step(self, n: int = 1) -> list[Key]:
        """Advance the simulated contact centre ``n`` times; returns the keys that changed."""
        changed: list[Key] = []
        for _ in range(n):
            changed += self._step_agents() + self._step_groups()
        return changed

    def _stamp(self) -> str:
        return datetime.fromtimestamp(self._now_ms() / 1000, TZ).isoformat(timespec="milliseconds")

    def _group_state_keys(self, agent: str) -> list[Key]:
        return [(m, agent) for m, group in self.group_states.items() if agent in self.members[group]]

    def _populate(self) -> None:
        for agent in self.agents:
            self._state[agent] = "Available"
            self.set(("K0STATE1", agent), {"type": "STRING", "value": "Available"})
            for key in self._group_state_keys(agent):
                self.set(key, {"type": "STRING", "value": "Available"})
            self.set(("K0ONCALL", agent), {"type": "BOOLEAN", "value": False})
            self.set(
                ("K0TALKMS", agent),
                {"type": "DURATION", "finishedDuration": 0, "numCountingUp": 0, "numCountingDown": 0},
            )
        for group in self.groups:
            self.set(("K0QUEUED", group), {"type": "COUNT", "count": 0})
            self.set(
                ("K0AVGWT1", group),
                {
                    "type": "AVERAGE_DURATION",
                    "durationSum": 0,
                    "count": 0,
                    "numCountingUp": 0,
                    "numCountingDown": 0,
                },
            )
        self.set(("K0LONGWT", None), {})
        for direction in DIRECTIONS:
            self.set(("K0DIRCNT", direction), {"type": "COUNT", "count": 0})
        self.set(("K0NOTICE", None), {"type": "STRING", "value": "All systems normal"})

    def _step_agents(self) -> list[Key]:
        changed: list[Key] = []
        for agent in self.agents:
            if self._rng.random() > 0.5:
                continue
            old, new = self._state[agent], self._rng.choice(STATES)
            if new == old:
                continue
            self._state[agent] = new
            talking = new == "Talking"
            self.set(("K0STATE1", agent), {"type": "STRING", "value": new})
            for key in self._group_state_keys(agent):
                self.set(key, {"type": "STRING", "value": new})
                changed.append(key)
            self.set(("K0ONCALL", agent), {"type": "BOOLEAN", "value": talking})
            talk = self.current(("K0TALKMS", agent))
            spoken = self._rng.randint(20_000, 300_000) if old == "Talking" else 0
            self.set(
                ("K0TALKMS", agent),
                {
                    "type": "DURATION",
                    "finishedDuration": talk["finishedDuration"] + spoken,
                    "numCountingUp": int(talking),
                    "numCountingDown": 0,
                },
            )
            changed += [("K0STATE1", agent), ("K0ONCALL", agent), ("K0TALKMS", agent)]
            if talking:
                self._talk_since[agent] = self._now_ms()
            if old == "Talking":
                direction = self._rng.choice(DIRECTIONS)
                count = self.current(("K0DIRCNT", direction))["count"] + 1
                self.set(("K0DIRCNT", direction), {"type": "COUNT", "count": count})
                changed.append(("K0DIRCNT", direction))
                self._finish_call(agent, direction, spoken)
        return changed

    def _finish_call(self, agent: str, direction: str, spoken_ms: int) -> None:
        """Record one finished call (rule 4): the call data a WebService profile can send."""
        end = self._now_ms()
        start = self._talk_since.pop(agent, end - spoken_ms)
        name, ext = agent[:-1].split("(")
        groups = [g for g, members in self.members.items() if agent in members]
        self.finished_calls += 1
        self.calls.append(
            {
                "callId": str(100_000 + self.finished_calls),
                "direction": direction,
                "agent": name,
                "extension": ext,
                "group": groups[0] if groups else "",
                "startTime": datetime.fromtimestamp(start / 1000, TZ).isoformat(timespec="milliseconds"),
                "endTime": datetime.fromtimestamp(end / 1000, TZ).isoformat(timespec="milliseconds"),
                "talkingDuration": hms(spoken_ms),
            }
        )

    def _step_groups(self) -> list[Key]:
        changed: list[Key] = []
        waiting_total = 0
        for group in self.groups:
            waiting = self._rng.randint(0, 4)
            waiting_total += waiting
            if waiting != self.current(("K0QUEUED", group))["count"]:
                self.set(("K0QUEUED", group), {"type": "COUNT", "count": waiting})
                changed.append(("K0QUEUED", group))
            avg = self.current(("K0AVGWT1", group))
            answered = self._rng.randint(0, 2)
            if answered:
                self.set(
                    ("K0AVGWT1", group),
                    {
                        "type": "AVERAGE_DURATION",
                        "durationSum": avg["durationSum"] + answered * self._rng.randint(5_000, 90_000),
                        "count": avg["count"] + answered,
                        "numCountingUp": waiting,
                        "numCountingDown": 0,
                    },
                )
                changed.append(("K0AVGWT1", group))
        longest: dict[str, Any] = {}
        if waiting_total:
            longest = {"type": "DURATION", "finishedDuration": 0, "numCountingUp": 1, "numCountingDown": 0}
        if {k: v for k, v in self.current(("K0LONGWT", None)).items() if k != "lastUpdateTime"} != longest:
            self.set(("K0LONGWT", None), longest)
            changed.append(("K0LONGWT", None))
        return changed

    # ------------------------------------------------------------------ reports

    def report(self, key: str, start: str, end: str, run: int) -> dict[str, Any]:
        """The deterministic 'Agent Talking Summary' report of one timeframe (:mod:`.reports`)."""
        return agent_talking_summary(self.agents + self.late.get(start, []), key, start, end, run)
