"""The simulated O2G's state: sessions, subscriptions and their queues, the PBX's traffic. No HTTP.

Rules:

1. Events are queued per subscription (:meth:`Subscription.put`) and leave the queue only once
   written to a channel or acknowledged by a webhook (:mod:`.channel`); a deleted or expired
   subscription loses its queue, as O2G's does (004 L2313-2314), and so does a chunk subscription
   whose channel stayed closed for ``reopen_window`` seconds (004 L2142, L2145).
2. Selectors match as the guide says (package rule 3 of :mod:`streamd.sim.o2g`).
3. :meth:`O2GWorld.publish` applies the deviations and the latency stamp once per event, then
   queues it on every matching subscription.
"""

from __future__ import annotations

import random
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import anyio
import orjson

from streamd.sim.deviate import deviate
from streamd.sim.o2g.guide import EVENT_PACKAGES, GUIDE, ID_FIELD, NUMBERED, SERVER_START
from streamd.sim.o2g_traffic import O2GTraffic


@dataclass(eq=False)
class Session:
    """One O2G session (its cookie token), its subscriptions and the pilots it monitors."""

    token: str
    ttl: float
    last_seen: float
    subs: dict[str, Subscription] = field(default_factory=dict)
    pilots: set[str] = field(default_factory=set)  # the pilots this session monitors


@dataclass(eq=False)
class Subscription:
    """One subscription: its selectors, its queue, its chunk channel or webhook."""

    id: str
    session: Session
    selectors: list[dict[str, Any]]
    webhook_url: str | None
    pending: deque[bytes] = field(default_factory=deque)
    wake: anyio.Event = field(default_factory=anyio.Event)
    channel: int = 0
    closed: bool = False
    reader: int | None = None  # the channel reading it now, if any
    unread_since: float | None = None  # when it was last left without a reader (chunk mode)
    answered: anyio.Event = field(default_factory=anyio.Event)  # its first webhook POST was answered

    def matches(self, event: dict[str, Any]) -> bool:
        """Whether one of the selectors asks for ``event`` (rule 2)."""
        name = str(event.get("eventName", ""))
        packages = EVENT_PACKAGES.get(name, [])
        if name == SERVER_START and not self.webhook_url:
            return False  # "needs a webhook url to be configured" (004 L8950)
        for selector in self.selectors:
            names = selector.get("names") or []
            if name not in names and not any(p in names for p in packages):
                continue
            ids = selector.get("ids")
            package = next((p for p in packages if p in names), packages[0] if packages else "")
            key = ID_FIELD.get(package, "loginName")
            if not ids or ("*" in ids and package not in NUMBERED) or key not in event:
                return True  # no key field: an unroutable event injected for streamd to dead-letter
            if str(event.get(key, "")) in ids:
                return True
        return False

    def put(self, data: bytes) -> None:
        """Queue one event's bytes and wake its reader."""
        self.pending.append(data)
        self.wake.set()

    def close(self) -> None:
        """The subscription is gone: its queue with it."""
        self.closed = True
        self.pending.clear()
        self.wake.set()


class O2GWorld:
    """The PBX behind the simulated O2G: agents, pilots, nodes, sessions and their subscriptions."""

    def __init__(
        self,
        *,
        agents: int,
        pilots: int,
        nodes: int,
        session_ttl: float,
        reopen_window: float,
        stamp: str | None,
        deviate: float,
        seed: int | None,
    ) -> None:
        self.server_id = "127.0.0.1"  # the serverId of OnServerStart
        self.session_ttl = session_ttl
        self.reopen_window = reopen_window  # a chunk subscription left unread this long is closed
        self.stamp = stamp  # a field added to every published event: time.time_ns() when queued
        self.deviate = deviate  # this share of published events deviates from the guide (sim.deviate)
        self.deviated: list[str] = []  # the JSON path each deviating event changed, in order
        self.deviate_rng = random.Random(seed)
        self.sessions: dict[str, Session] = {}
        self.rti_context: Any = None
        self.published = 0
        self.traffic = O2GTraffic(agents=agents, pilots=pilots, seed=seed)
        self.agents = self.traffic.agents
        self.pilots = self.traffic.pilots
        self.nodes = [str(n + 1) for n in range(max(1, nodes))]
        self.pilot_nodes = {p: self.nodes[i % len(self.nodes)] for i, p in enumerate(self.pilots)}

    @property
    def monitored_pilots(self) -> set[str]:
        """Pilots some live session monitors: only their pilot events exist."""
        return {p for session in self.sessions.values() for p in session.pilots}

    def all_subs(self) -> list[Subscription]:
        """Every live subscription."""
        return [sub for session in self.sessions.values() for sub in session.subs.values()]

    def subscriptions(self) -> list[str]:
        """Ids of the live subscriptions."""
        return [s.id for s in self.all_subs()]

    def filters(self) -> list[list[dict[str, Any]]]:
        """The selectors of each live subscription."""
        return [sub.selectors for sub in self.all_subs()]

    def publish(self, *events: dict[str, Any]) -> int:
        """Queue events for every subscription whose selectors match; returns how many matched."""
        matched = 0
        monitored = self.monitored_pilots
        for event in events:
            pilot = event.get("pilot")
            if "pilot" in EVENT_PACKAGES.get(str(event.get("eventName")), ()) and (
                pilot is not None and str(pilot) not in monitored
            ):
                continue  # no monitoring, no event (004 L14343-14360)
            if self.deviate and self.deviate_rng.random() < self.deviate:
                event, path = deviate(event, self.deviate_rng, GUIDE)
                self.deviated.append(path)
            if self.stamp is not None:  # for latency benchmarks: when the vendor wrote it
                event = {**event, self.stamp: time.time_ns()}
            data = orjson.dumps(event) + b"\n"
            self.published += 1
            for sub in self.all_subs():
                if sub.matches(event):
                    sub.put(data)
                    matched += 1
        return matched

    def publish_raw(self, data: bytes) -> None:
        """Queue raw bytes (e.g. a malformed event) on every subscription."""
        for sub in self.all_subs():
            sub.put(data)

    def generate(self, n: int) -> list[dict[str, Any]]:
        """Produce (and publish) at least ``n`` realistic agent, call and pilot events."""
        produced: list[dict[str, Any]] = []
        while len(produced) < n:
            produced.extend(self.traffic.tick())
        self.publish(*produced)
        return produced

    # -- system events (package rule 6) ------------------------------------------------------

    def cti_link(self, node: str, up: bool) -> int:
        """``OnCtiLinkDown`` / ``OnCtiLinkUp`` of ``node``; returns how many subscriptions got it."""
        return self.publish({"eventName": "OnCtiLinkUp" if up else "OnCtiLinkDown", "nodeId": node})

    def pbx_loaded(self, node: str) -> int:
        """``OnPbxLoaded``: the data of ``node`` are fully loaded (004 L8944-8948)."""
        return self.publish({"eventName": "OnPbxLoaded", "nodeId": node})

    def license_expiration(self, days: int, message: str = "license file expiration") -> int:
        """``OnLicenseExpiration``: the licence file expires in ``days`` (negative: expired since)."""
        return self.publish({"eventName": "OnLicenseExpiration", "message": message, "nbDays": days})

    def server_start(self) -> int:
        """``OnServerStart`` (webhook subscriptions naming it only, 004 L8950)."""
        return self.publish({"eventName": SERVER_START, "serverId": self.server_id})

    # -- sessions ----------------------------------------------------------------------------

    def drop_session(self, token: str) -> None:
        """End a session: its subscriptions and their queues are gone."""
        session = self.sessions.pop(token, None)
        if session is not None:
            for sub in session.subs.values():
                sub.close()

    def expire_sessions(self) -> None:
        """Expire every session now: their subscriptions and channels are closed."""
        for token in list(self.sessions):
            self.drop_session(token)

    def drop_subscriptions(self) -> None:
        """Delete every subscription server-side (their channels close; the sessions stay)."""
        for session in self.sessions.values():
            for sub in session.subs.values():
                sub.close()
            session.subs.clear()

    def reap(self, now: float) -> None:
        """Drop the sessions past their TTL and the chunk subscriptions unread too long (rule 1)."""
        for token, session in list(self.sessions.items()):
            if now - session.last_seen > session.ttl:
                self.drop_session(token)
                continue
            for sid, sub in list(session.subs.items()):
                if sub.unread_since is not None and now - sub.unread_since > self.reopen_window:
                    del session.subs[sid]  # "closed after the socket ... closed for one minute"
                    sub.close()
