"""What O2G's events do not say about an agent, added from its slower reads and from its other events.

Rules:

1. One :class:`Directory` per source, kept across sessions, holds what the reads found: each
   processing group's withdraw-reason labels (``GET /acd/agent/withdrawReasons``), each agent's
   display name and directory number (``GET /users/{loginName}``: ``firstName lastName``,
   ``companyPhone``), each agent's processing groups (``GET /acd/agent/config``), and which pilots
   serve which group (learnt from the events, rule 4).
2. The reads run after each agent snapshot (:meth:`Directory.refresh`, before the snapshot is
   published; not again within :data:`FRESH_FOR` of a refresh that worked unless the snapshot
   has new agents: channel reopens re-snapshot often) and then every ``interval``
   (:meth:`Directory.keep_fresh`, a task of the session), never per event. A read that fails leaves what was known (at worst codes and logins only):
   one warning when reads start failing, one info line when they work again; only a lost session
   propagates, the source never stops for a read.
3. Every event the source publishes passes :meth:`Directory.enrich` (through :class:`Enriching`,
   the source's emitter), in order, with no I/O. A canonical ``AgentState`` gets ``agent_name``,
   ``reason_label`` (the code's label in the agent's group, else in another of its groups) and
   ``queue_ids`` = its current group, its other groups, then the pilots that serve any of them.
   An ``OnAgentRtiChanged`` (a delta keyed by the agent's number) is merged into what RTI said of
   that number before; once the number's login is known and RTI told its ``serviceState``, a
   delta carrying ``serviceState``, ``phoneState``, ``withdrawReason`` or ``currentPG`` is
   followed by the canonical state (:func:`.mapping.rti_agent_state`), unless the agent's
   canonical state, reason and group are already that (an RTI snapshot, or the agent package
   said it first): no second event, no new ``since``.
4. ``OnUserInfoChanged`` / ``OnUserCreated`` (packages ``user``, ``userManagement``) update the
   user's name and number at once. Pilot -> group links are learnt from
   ``OnPilotCallQueued.queue`` when it is a known group, from ``OnPilotCallRemoved`` to an
   agent's number (the agent's current group), and from ``OnAgentRtiChanged.pilotName`` with
   ``currentPG`` (pilot names from the pilot snapshot and ``OnPilotRtiChanged``). A link is kept
   for the directory's life.
5. When what is known of an agent changes (a new pilot link, a refresh or a user event with new
   names, labels or groups), its last canonical state is published again with the new fields,
   its ``since`` kept.
"""

from __future__ import annotations

import dataclasses
import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Final

import anyio

from streamd.errors import SourceError
from streamd.events import AgentState, Event, new_event, utcnow
from streamd.runtime import task_group
from streamd.sources.base import Emit
from streamd.sources.o2g import acd, mapping
from streamd.sources.o2g.client import O2GClient
from streamd.sources.o2g.protocol import SessionExpired
from streamd.telemetry import count_error

log = logging.getLogger("streamd.sources.o2g")

REFRESH_INTERVAL: Final = 900.0
"""Seconds between two refreshes of the directory (rule 2)."""
_USER_CHANGED: Final = frozenset({"o2g.user.OnUserInfoChanged", "o2g.userManagement.OnUserCreated"})
_PILOT_NAMED: Final = frozenset({"o2g.pilot.PilotSnapshot", "o2g.rti.OnPilotRtiChanged"})
FRESH_FOR: Final = 60.0
"""A snapshot this soon after a refresh that worked reads again only if it has new agents."""
RTI_STATE_FIELDS: Final = frozenset({"serviceState", "phoneState", "withdrawReason", "currentPG"})
"""An RTI agent delta with one of these says something about the agent's canonical state."""


def _text(value: Any) -> str | None:
    """A usable id or name: a non-empty string, or a number written as one."""
    if isinstance(value, bool) or not isinstance(value, str | int) or value == "":
        return None
    return str(value)


def reason_labels(body: Mapping[str, Any]) -> dict[str, str]:
    """``WithdrawReasons`` -> reason index (as text) -> label; reasons without a label are left out."""
    labels: dict[str, str] = {}
    for reason in body.get("reasons") or []:
        if (
            isinstance(reason, dict)
            and (index := _text(reason.get("index")))
            and (label := _text(reason.get("label")))
        ):
            labels[index] = label
    return labels


def display_name(body: Mapping[str, Any]) -> str | None:
    """A ``User``'s ``firstName lastName`` (whichever it has), or ``None``."""
    parts = [
        p.strip() for p in (body.get("firstName"), body.get("lastName")) if isinstance(p, str) and p.strip()
    ]
    return " ".join(parts) or None


def config_groups(body: Mapping[str, Any]) -> tuple[str, ...]:
    """An ``AgentConfig``'s processing groups, the preferred one first."""
    groups = body.get("processingGroups")
    if not isinstance(groups, dict):
        return ()
    more = groups.get("groups")
    listed = [groups.get("preferred"), *(more if isinstance(more, list) else [])]
    return tuple(dict.fromkeys(g for g in map(_text, listed) if g))


class Directory:
    """What one O2G source knows about its agents beyond their events (module rules).

    Attributes:
        source: the source name.
        labels: processing group -> reason index -> label.
        names: login -> display name.
        logins: directory number -> login.
        groups: login -> its processing groups (agent config).
        pilots: processing group -> the pilots that serve it.
    """

    def __init__(self, source: str, *, interval: float = REFRESH_INTERVAL, concurrency: int = 8) -> None:
        self.source = source
        self.interval = interval
        self.concurrency = concurrency
        self.labels: dict[str, dict[str, str]] = {}
        self.names: dict[str, str] = {}
        self.logins: dict[str, str] = {}
        self.groups: dict[str, tuple[str, ...]] = {}
        self.pilots: dict[str, set[str]] = {}
        self.pilot_numbers: dict[str, str] = {}  # pilot name -> number
        self.refreshed_at: float | None = None
        self._rti: dict[str, dict[str, Any]] = {}  # agent number -> RTI attributes so far
        self._base: dict[str, AgentState] = {}  # login -> last canonical state, as mapped
        self._published: dict[str, AgentState] = {}  # login -> last canonical state, as published
        self._current: Counter[str] = Counter()  # group -> how many agents are in it now
        self._failing = False

    # -- rule 3: enriching -----------------------------------------------------------------------

    def complete(self, state: AgentState) -> AgentState:
        """``state`` with the name, reason label and queues the directory knows (rule 3)."""
        login = state.agent_id
        more = self.groups.get(login, ())
        groups = tuple(dict.fromkeys((*state.queue_ids, *more))) if more else state.queue_ids
        if self.pilots:
            pilots = sorted({p for g in groups for p in self.pilots.get(g, ())} - set(groups))
            queues = (*groups, *pilots) if pilots else groups
        else:
            queues = groups
        name = state.agent_name or self.names.get(login)
        label, code = state.reason_label, state.reason_code
        if code is not None and label is None:
            label = next((t[code] for g in groups if code in (t := self.labels.get(g, {}))), None)
        if (name, label, queues) == (state.agent_name, state.reason_label, state.queue_ids):
            return state
        return AgentState(
            vendor=state.vendor,
            source=state.source,
            agent_id=login,
            state=state.state,
            agent_name=name,
            vendor_state=state.vendor_state,
            reason_code=code,
            reason_label=label,
            since=state.since,
            queue_ids=queues,
        )

    def enrich(self, events: Sequence[Event]) -> list[Event]:
        """The events to publish instead of ``events`` (rules 3-5), in order."""
        out: list[Event] = []
        for event in events:
            kind = event.type
            if kind == "streamd.agent.State" and isinstance(event.data, AgentState):
                out.append(self._publish(event.data, event))
                continue
            out.append(event)
            data = event.data if isinstance(event.data, dict) else {}
            if kind == "o2g.rti.OnAgentRtiChanged":
                out += self._rti_agent(data, event)
            elif kind == "o2g.pilot.OnPilotCallQueued":
                out += self._queued(data)
            elif kind == "o2g.pilot.OnPilotCallRemoved":
                out += self._removed(data)
            elif kind in _USER_CHANGED and isinstance(user := data.get("user"), dict):
                out += self._user(user)
            elif (
                kind in _PILOT_NAMED
                and (name := _text(data.get("name")))
                and (number := _text(data.get("number")))
            ):
                self.pilot_numbers[name] = number
        return out

    def _publish(self, state: AgentState, event: Event) -> Event:
        if self._published.get(state.agent_id) is state:
            return event  # one the directory completed itself (rule 5): passed on as it is
        self._set_base(state.agent_id, state)
        done = self._published[state.agent_id] = self.complete(state)
        if done is state:
            return event
        return new_event(
            topic=event.topic,
            type=event.type,
            source=event.source,
            key=event.key,
            data=done,
            time=event.time,
            id=event.id,
            snapshot=event.snapshot,
            deviations=event.deviations,
        )

    def _rti_agent(self, delta: dict[str, Any], event: Event) -> list[Event]:
        number = _text(delta.get("number"))
        if number is None:
            return []
        merged = self._rti.setdefault(number, {})
        merged.update((k, v) for k, v in delta.items() if v is not None)
        out = []
        pilot = self.pilot_numbers.get(_text(delta.get("pilotName")) or "")
        if pilot is not None and (group := _text(merged.get("currentPG"))):
            out += self._link(pilot, group)
        login = self.logins.get(number)
        if login is None or "serviceState" not in merged or RTI_STATE_FIELDS.isdisjoint(delta):
            return out
        rti_name = display_name({"firstName": merged.get("firstName"), "lastName": merged.get("name")})
        if login not in self.names and rti_name:
            self.names[login] = rti_name
        state = mapping.rti_agent_state(self.source, login, merged, since=event.time)
        last = self._base.get(login)
        if last is not None and not state.queue_ids:
            state = dataclasses.replace(state, queue_ids=last.queue_ids[:1])
        if last is not None and (last.state, last.reason_code, last.queue_ids[:1]) == (
            state.state,
            state.reason_code,
            state.queue_ids,
        ):
            return out
        self._set_base(login, state)
        done = self._published[login] = self.complete(state)
        return [*out, done.to_event(snapshot=event.snapshot)]

    def _user(self, user: dict[str, Any]) -> list[Event]:
        """A user's changed or new account: its name and number (rule 5 when they change)."""
        login = _text(user.get("loginName"))
        if login is None:
            return []
        if name := display_name(user):
            self.names[login] = name
        if number := _text(user.get("companyPhone")):
            self.logins[number] = login
        return self.republish() if login in self._base else []

    def _queued(self, event: dict[str, Any]) -> list[Event]:
        pilot, queue = _text(event.get("pilot")), _text(event.get("queue"))
        if pilot is None or queue is None or not self._is_group(queue):
            return []
        return self._link(pilot, queue)

    def _removed(self, event: dict[str, Any]) -> list[Event]:
        pilot, login = _text(event.get("pilot")), self.logins.get(str(event.get("newDestination")))
        state = self._base.get(login) if login is not None else None
        if pilot is None or state is None or not state.queue_ids:
            return []
        return self._link(pilot, state.queue_ids[0])

    def _set_base(self, login: str, state: AgentState) -> None:
        """Record ``login``'s canonical state as mapped, counting the agents of each current group."""
        old = self._base.get(login)
        self._base[login] = state
        before, after = (old.queue_ids[:1] if old else ()), state.queue_ids[:1]
        if before != after:
            for group in before:
                self._current[group] -= 1
            for group in after:
                self._current[group] += 1

    def _is_group(self, queue: str) -> bool:
        return self._current[queue] > 0 or any(queue in groups for groups in self.groups.values())

    def _link(self, pilot: str, group: str) -> list[Event]:
        """Pilot ``pilot`` serves ``group`` (rule 4); the agent states that change with it (rule 5)."""
        serving = self.pilots.setdefault(group, set())
        if pilot in serving or pilot == group:
            return []
        serving.add(pilot)
        log.info("o2g %s: pilot %s serves processing group %s", self.source, pilot, group)
        return self.republish()

    def republish(self) -> list[Event]:
        """Each agent whose canonical state the directory now completes differently (rule 5)."""
        now, out = utcnow(), []
        for login, base in self._base.items():
            done = self.complete(base)
            if done != self._published.get(login):
                self._published[login] = done
                out.append(done.to_event(time=now))
        return out

    # -- rule 2: reading -------------------------------------------------------------------------

    async def refresh(self, client: O2GClient, states: Mapping[str, Mapping[str, Any]] | None = None) -> None:
        """Read names, numbers, groups and reason labels again (rule 2); what fails is kept.

        Args:
            client: the session's client.
            states: the agent snapshot just read (login -> ``AgentState`` body); default: the
                logins of ``GET /logins?onlyACD``.

        Raises:
            SessionExpired: the session is gone.
        """
        if states is not None and self._fresh() and all(login in self.groups for login in states):
            return  # a re-snapshot soon after a refresh that worked, no new agent (rule 2)
        failures: list[SourceError] = []
        try:
            wanted = list(states) if states is not None else await acd.agent_logins(client)
        except SessionExpired:
            raise
        except SourceError as exc:
            wanted, failures = list(self._base), [exc]
        limit = anyio.Semaphore(self.concurrency)

        async def read(call: Callable[..., Awaitable[dict[str, Any]]], *args: str) -> dict[str, Any] | None:
            async with limit:
                try:
                    return await call(client, *args)
                except SessionExpired:
                    raise
                except SourceError as exc:
                    count_error(self.source, "directory", type(exc).__name__)
                    failures.append(exc)
                    return None

        async def agent(login: str) -> None:
            if (body := await read(acd.user, login)) is not None:
                if name := display_name(body):
                    self.names[login] = name
                if number := _text(body.get("companyPhone")):
                    self.logins[number] = login
            if (body := await read(acd.agent_config, login)) is not None:
                self.groups[login] = config_groups(body)

        async with task_group() as tg:
            for login in wanted:
                tg.start_soon(agent, login)
        members: dict[str, str] = {}  # group -> one of its agents (an administrator must name one)
        for login in wanted:
            current = (states or {}).get(login, {}).get("pgNumber")
            known = self._base[login].queue_ids[:1] if login in self._base else ()
            for group in (*self.groups.get(login, ()), *known, *([str(current)] if current else [])):
                members.setdefault(group, login)

        async def labels(group: str, login: str) -> None:
            if (body := await read(acd.withdraw_reasons, group, login)) is not None:
                self.labels[group] = reason_labels(body)

        async with task_group() as tg:
            for group, login in members.items():
                tg.start_soon(labels, group, login)
        self.refreshed_at = anyio.current_time()
        self._report(failures)

    def _fresh(self) -> bool:
        """The last refresh worked and is less than :data:`FRESH_FOR` old."""
        last = self.refreshed_at
        return last is not None and not self._failing and anyio.current_time() - last < FRESH_FOR

    def _report(self, failures: list[SourceError]) -> None:
        if failures and not self._failing:
            log.warning(
                "o2g %s: %d directory read(s) failed, names, reason labels or groups may be missing: %s",
                self.source,
                len(failures),
                failures[0],
            )
        elif not failures and self._failing:
            log.info("o2g %s: directory reads work again", self.source)
        self._failing = bool(failures)

    async def keep_fresh(self, client: O2GClient, emit: Emit, *, snapshots: bool) -> None:
        """Refresh every ``interval`` and publish what changed (rules 2 and 5), until cancelled.

        Args:
            client: the session's client.
            emit: where changed agent states go.
            snapshots: the session's agent snapshots refresh the directory (the first refresh is
                then theirs).
        """
        waited = False
        while True:
            if self.refreshed_at is None:
                left = self.interval if snapshots and not waited else 0.0
            else:
                left = self.refreshed_at + self.interval - anyio.current_time()
            if left > 0:
                await anyio.sleep(left)
                waited = True
                continue
            await self.refresh(client)
            if events := self.republish():
                await emit(events)


class Enriching:
    """The source's emitter with :meth:`Directory.enrich` applied to every batch (rule 3)."""

    def __init__(self, emit: Emit, directory: Directory) -> None:
        self.emit = emit
        self.directory = directory

    async def __call__(self, events: Sequence[Event]) -> None:
        """Publish and wait until durable (as the wrapped emitter)."""
        await self.emit(self.directory.enrich(events))

    async def push(self, events: Sequence[Event]) -> None:
        """Queue for publishing (as the wrapped emitter)."""
        await self.emit.push(self.directory.enrich(events))
