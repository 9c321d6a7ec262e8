"""What one O2G source knows about its agents beyond their events, and the reads that find it out.

The directory is built in layers: this module (what is known, the reads, completing a canonical
state with it), :mod:`.learning` (what the events teach: user changes, pilot -> group links) and
:mod:`.enrich` (:class:`~streamd.sources.o2g.enrich.Directory`: every published event enriched).

Rules:

1. One directory per source (:class:`~streamd.sources.o2g.enrich.Directory`), kept across
   sessions, holds what the reads found: each processing group's withdraw-reason labels
   (``GET /acd/agent/withdrawReasons``), each agent's display name and directory number
   (``GET /users/{loginName}``: ``firstName lastName``, ``companyPhone``), each agent's
   processing groups (``GET /acd/agent/config``), and which pilots serve which group (learnt
   from the events, :mod:`.learning`).
2. The reads run after each agent snapshot (:meth:`DirectoryReads.refresh`, before the snapshot
   is published; not again within :data:`FRESH_FOR` of a refresh that worked unless the
   snapshot has new agents: channel reopens re-snapshot often) and then every ``interval``
   (:meth:`DirectoryReads.keep_fresh`, a task of the session), never per event. A read that
   fails leaves what was known (at worst codes and logins only): one warning when reads start
   failing, one info line when they work again; only a lost session propagates, the source never
   stops for a read.
3. :meth:`DirectoryReads.complete` adds what is known to a canonical ``AgentState`` (no I/O):
   ``agent_name``, ``reason_label`` (the code's label in the agent's group, else in another of
   its groups) and ``queue_ids`` = its current group, its other groups, then the pilots that
   serve any of them.
4. When what is known of an agent changes (a new pilot link, a refresh or a user event with new
   names, labels or groups), its last canonical state is published again with the new fields,
   its ``since`` kept (:meth:`DirectoryReads.republish`).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final

import anyio

from streamd.errors import SourceError
from streamd.events import AgentState, Event, new_agent_state, utcnow
from streamd.runtime import task_group
from streamd.sources.base import Emit
from streamd.sources.o2g import acd
from streamd.sources.o2g.client import O2GClient
from streamd.sources.o2g.protocol import SessionExpired
from streamd.telemetry import count_error

log = logging.getLogger("streamd.sources.o2g")

REFRESH_INTERVAL: Final = 900.0
"""Seconds between two refreshes of the directory (rule 2)."""
FRESH_FOR: Final = 60.0
"""A snapshot this soon after a refresh that worked reads again only if it has new agents."""


def as_text(value: Any) -> str | None:
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
            and (index := as_text(reason.get("index")))
            and (label := as_text(reason.get("label")))
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
    return tuple(dict.fromkeys(g for g in map(as_text, listed) if g))


class DirectoryReads:
    """What one O2G source knows about its agents beyond their events, and its reads (rules 1-4).

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

    def complete(self, state: AgentState) -> AgentState:
        """``state`` with the name, reason label and queues the directory knows (rule 3)."""
        login = state.agent_id
        current = state.queue_ids
        more = self.groups.get(login, ())
        if not more or (more == current and len(current) < 2):  # the usual case: nothing to merge
            groups = current
        else:
            groups = tuple(dict.fromkeys((*current, *more)))
        if not self.pilots:
            queues = groups
        elif len(groups) == 1:  # one group: its pilots, without the group itself
            serving = self.pilots.get(groups[0])
            pilots = sorted(serving - set(groups)) if serving else []
            queues = (*groups, *pilots) if pilots else groups
        else:
            pilots = sorted({p for g in groups for p in self.pilots.get(g, ())} - set(groups))
            queues = (*groups, *pilots) if pilots else groups
        name = state.agent_name or self.names.get(login)
        label, code = state.reason_label, state.reason_code
        if code is not None and label is None:
            label = next((t[code] for g in groups if code in (t := self.labels.get(g, {}))), None)
        if (name, label, queues) == (state.agent_name, state.reason_label, state.queue_ids):
            return state
        return new_agent_state(
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

    def republish(self) -> list[Event]:
        """Each agent whose canonical state the directory now completes differently (rule 4)."""
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
                if number := as_text(body.get("companyPhone")):
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
        """Refresh every ``interval`` and publish what changed (rules 2 and 4), until cancelled.

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
