"""The state an O2G session reads besides the stream: snapshots and re-snapshots (spec o2g.md §5.3).

Rules:

1. The first snapshot of a subscription (:meth:`Snapshots.part` around each read): a part the
   login has no right or licence for (a fatal answer for that read, e.g. ``NOT_ALLOWED``) is
   skipped with a warning; a lost session propagates. Agent states are ``GET /logins?onlyACD`` +
   ``GET /acd/agent/state`` (the directory refreshed before they are published, :mod:`.enrich`),
   pilots are read per node (a failing node is skipped); a row that does not normalize is a dead
   letter with its raw text.
2. The telephony state is asked for (``POST /telephony/state/snapshot``, without ``loginName``
   for ``"*"``, else per login, 004 L4555-4592; an unknown login is skipped with a warning): its
   ``OnTelephonyState`` answers arrive on the stream and are published with ``snapshot=True``. The
   RTI values, too, arrive as events once the RTI context is (re)activated or re-snapshotted.
3. A re-snapshot (:meth:`Snapshots.resnapshot`: after a chunk reopen, when a system event asked
   for it) reads every part on its own (:meth:`Snapshots.kept`): what a part fails with is logged
   and counted, only a lost session (:class:`~.protocol.SessionExpired`) propagates.
4. Every snapshot is published with ``snapshot=True`` through ``await emit(...)`` (durable); no
   retry loop and no httpx exception here.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from streamd.errors import FatalError, NormalizationError, SourceError
from streamd.events import Event
from streamd.sources.base import Emit
from streamd.sources.o2g.acd import activate_rti, agent_states, discover_pilots
from streamd.sources.o2g.chunk import dead_letter
from streamd.sources.o2g.client import O2GClient
from streamd.sources.o2g.config import O2GSourceConfig, package_ids
from streamd.sources.o2g.enrich import Directory
from streamd.sources.o2g.normalize import agent_state_snapshot, pilots_snapshot
from streamd.sources.o2g.protocol import O2GRequestError, SessionExpired
from streamd.telemetry import count_error

log = logging.getLogger("streamd.sources.o2g")

Read = Callable[[O2GClient], Awaitable[list[Event]]]
"""One part of a snapshot: what it read, as events (none for parts whose answers are events)."""


@dataclass(slots=True)
class Snapshots:
    """The snapshot reads of one O2G source (module rules)."""

    name: str
    config: O2GSourceConfig
    directory: Directory

    async def snapshot(self, client: O2GClient) -> list[Event]:
        """Current agent states and pilot status read over REST, as ``snapshot=True`` events (rule 1)."""
        events: list[Event] = []
        packages = set(self.config.packages)
        if "agent" in packages:
            events.extend(await self.part("agent states", self.agents, client))
        if "pilot" in packages:
            events.extend(await self.part("pilots", self.pilots, client))
        return events

    async def resnapshot(self, client: O2GClient, emit: Emit, why: str) -> None:
        """Snapshot again (rule 3): each part on its own, only a lost session propagates."""
        log.info("o2g %s: %s: re-snapshot", self.name, why)
        if "rti" in self.config.packages:
            await self.kept("rti", self.rti, client)
        if not self.config.snapshot:
            return
        await self.kept("telephony", self.telephony, client)
        events: list[Event] = []
        if "agent" in self.config.packages:
            events += await self.kept("agent states", self.agents, client)
        if "pilot" in self.config.packages:
            events += await self.kept("pilots", self.pilots, client)
        if events:
            await emit(events)

    async def part(self, what: str, read: Read, client: O2GClient) -> list[Event]:
        """A part of the first snapshot: a fatal answer skips it with a warning (rule 1)."""
        try:
            return await read(client)
        except FatalError as exc:  # e.g. NOT_ALLOWED: no licence for this resource
            log.warning("o2g %s: snapshot of %s skipped: %s", self.name, what, exc)
            count_error(self.name, "snapshot", type(exc).__name__)
            return []

    async def kept(self, what: str, read: Read, client: O2GClient) -> list[Event]:
        """A re-snapshot part: what it fails with but a lost session is logged and counted."""
        try:
            return await read(client)
        except SessionExpired:
            raise
        except SourceError as exc:
            log.warning("o2g %s: re-snapshot of %s failed: %s", self.name, what, exc)
            count_error(self.name, "snapshot", type(exc).__name__)
            return []

    async def telephony(self, client: O2GClient) -> list[Event]:
        """Ask for every monitored user's telephony state; the answers come as events (rule 2)."""
        if "telephony" not in self.config.packages:
            return []
        url = client.base_url + "/telephony/state/snapshot"
        logins = package_ids(self.config, "telephony")
        if "*" in logins:  # an administrator, all users at once (004 L4564-4570)
            await client.request("POST", url, "telephony snapshot")
            return []
        for login in logins:
            try:
                await client.request("POST", url, "telephony snapshot", params={"loginName": login})
            except O2GRequestError as exc:  # an unknown login: skip it (spec §7.4)
                log.warning("o2g %s: no telephony snapshot for %s: %s", self.name, login, exc)
        return []

    async def rti(self, client: O2GClient) -> list[Event]:
        """Ask for the RTI values again; they arrive as events on the stream."""
        await client.request("POST", client.base_url + "/acd/rti/snapshot", "rti snapshot")
        return []

    async def activate_rti(self, client: O2GClient) -> list[Event]:
        """(Re)activate the RTI context; its snapshot arrives as events on the stream."""
        await activate_rti(client)
        return []

    async def agents(self, client: O2GClient) -> list[Event]:
        """The agent states, as ``snapshot=True`` events (a row that does not normalize: a dead letter)."""
        events: list[Event] = []
        states = await agent_states(client)
        await self.directory.refresh(client, states)  # before the snapshot is published (enrich.py)
        for login, state in states.items():
            try:
                events.extend(agent_state_snapshot(self.name, login, state))
            except NormalizationError as exc:
                events.append(dead_letter(self.name, "snapshot", exc.error_type, str(exc), repr(state)))
        return events

    async def pilots(self, client: O2GClient) -> list[Event]:
        """The pilots of every node, as ``snapshot=True`` events (a failing node is skipped)."""
        events: list[Event] = []
        for node, body in (await discover_pilots(client)).bodies.items():
            try:
                events.extend(pilots_snapshot(self.name, node, body))
            except NormalizationError as exc:
                events.append(dead_letter(self.name, "snapshot", exc.error_type, str(exc), repr(body)))
        return events
