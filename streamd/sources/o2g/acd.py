"""The ACD reads and activations of an O2G session: agent states, pilots, pilot monitoring, RTI.

Rules:

1. Pilots are discovered node by node (``GET /pbxs``, then ``GET /acd/{nodeId}/pilots``,
   004 L10683-10715, L13412-13465): a node whose list cannot be read is skipped with a warning
   and counted, the other nodes go on. Only a lost session propagates, and a failing
   ``GET /pbxs`` (nothing is known then: the caller's setup is retried; once the source has
   subscribed before, an answer O2G does not mark final is transient, as in :mod:`.client`).
2. Pilot monitoring, without which no pilot event flows (004 L14343-14360), is started for each
   pilot on its own (:class:`PilotMonitor`): ``POST /acd/pilotmonitoring/{pilot}`` (since 2.7.2),
   and when O2G refuses that form, the older ``/acd/pilotmonitoring/{nodeId}/{pilot}`` (then used
   for the session's other pilots too). A pilot O2G refuses for good (unknown, no right or
   licence) is skipped with a warning; one that failed transiently stays pending and is retried
   beside the session (:meth:`PilotMonitor.keep_trying`, a job of the supervisor) until it is
   monitored. A lost session propagates.
3. No retry loop here, no httpx exception caught here.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import anyio

from streamd.errors import FatalError, SourceError
from streamd.retry import Decision, Fatal, classify
from streamd.runtime import Connected, task_group
from streamd.sources.o2g.client import O2GClient, again
from streamd.sources.o2g.protocol import O2GRequestError, SessionExpired
from streamd.telemetry import count_error

log = logging.getLogger("streamd.sources.o2g")


# -- agents, their directory and RTI (004 L1141-1318, L12853-13100, L14646-14652) -------------


async def agent_logins(client: O2GClient) -> list[str]:
    """The ACD operators' logins (``GET /logins?onlyACD``)."""
    body = await client.get_json("/logins", "logins", params={"onlyACD": ""})
    return [str(x) for x in (body or {}).get("loginNames") or []]


async def agent_state(client: O2GClient, login: str) -> dict[str, Any] | None:
    """One agent's ``AgentState``, or ``None`` when O2G does not know the login."""
    try:
        body = await client.get_json("/acd/agent/state", "agent state", params={"loginName": login})
    except O2GRequestError as exc:  # NOT_FOUND / 404 for one item: skip it (spec §7.4)
        log.debug("o2g %s: no agent state for %s: %s", client.config.name, login, exc)
        return None
    return body if isinstance(body, dict) else None


async def agent_states(client: O2GClient) -> dict[str, dict[str, Any]]:
    """Every ACD operator's state, read with bounded concurrency."""
    logins = await agent_logins(client)
    states: dict[str, dict[str, Any]] = {}
    limit = anyio.Semaphore(client.config.snapshot_concurrency)

    async def one(login: str) -> None:
        async with limit:
            state = await agent_state(client, login)
        if state is not None:
            states[login] = state

    async with task_group() as tg:  # the first failure stops the others and surfaces as itself
        for login in logins:
            tg.start_soon(one, login)
    return {login: states[login] for login in logins if login in states}


async def user(client: O2GClient, login: str) -> dict[str, Any]:
    """One user's account (``GET /users/{loginName}``, 004 L1268-1318): name, ``companyPhone``."""
    body = await client.get_json(f"/users/{quote(login, safe='')}", f"user {login}")
    return body if isinstance(body, dict) else {}


async def agent_config(client: O2GClient, login: str) -> dict[str, Any]:
    """One agent's ``AgentConfig`` (``GET /acd/agent/config``, 004 L13140-13170): its groups."""
    body = await client.get_json("/acd/agent/config", f"agent config of {login}", params={"loginName": login})
    return body if isinstance(body, dict) else {}


async def withdraw_reasons(client: O2GClient, group: str, login: str) -> dict[str, Any]:
    """A processing group's ``WithdrawReasons`` (``GET /acd/agent/withdrawReasons``, 004
    L13054-13100), asked as ``login``, one of its agents (an administrator session must name one)."""
    params = {"pgNumber": group, "loginName": login}
    body = await client.get_json("/acd/agent/withdrawReasons", f"withdraw reasons of {group}", params=params)
    return body if isinstance(body, dict) else {}


async def activate_rti(client: O2GClient) -> None:
    """Create/activate the RTI context for every object and attribute, then ask for its snapshot.

    Without a context no ``rti`` event flows (004 L14646-14652); the snapshot's values arrive
    on the channel as ordinary ``On*RtiChanged`` events (004 L15112-15143).
    """
    everything = {"numbers": ["*"], "attributes": ["ALL"]}
    kinds = ("agentFilter", "pilotFilter", "queueFilter", "pgAgentFilter", "pgOtherFilter")
    context = {
        "obsPeriod": client.config.rti_obs_period,
        "notifFrequency": client.config.rti_notif_frequency,
        "filter": dict.fromkeys(kinds, everything),
    }
    await client.request("POST", client.base_url + "/acd/rti/ctx", "rti context", json=context)
    await client.request("POST", client.base_url + "/acd/rti/snapshot", "rti snapshot")


# -- pilots (rules 1 and 2) ----------------------------------------------------------------------


@dataclass(slots=True)
class Pilots:
    """What pilot discovery found.

    Attributes:
        nodes: each pilot number's node id, in discovery order.
        bodies: each readable node's ``Pilots`` body (for the pilot snapshot).
    """

    nodes: dict[str, str] = field(default_factory=dict)
    bodies: dict[str, dict[str, Any]] = field(default_factory=dict)


async def node_ids(client: O2GClient) -> list[str]:
    """The PBX node ids (``GET /pbxs``, 004 L10683-10715)."""
    body = await client.get_json("/pbxs", "pbxs")
    return [str(node) for node in (body or {}).get("nodeIds") or []]


async def node_pilots(client: O2GClient, node: str) -> dict[str, Any]:
    """One node's ``Pilots`` body (``GET /acd/{nodeId}/pilots``; ``pilotList`` may be null)."""
    body = await client.get_json(f"/acd/{node}/pilots", f"pilots of node {node}")
    return body if isinstance(body, dict) else {"pilotList": []}


async def monitor_pilot(client: O2GClient, pilot: str, node: str | None = None) -> None:
    """Start monitoring ``pilot``: ``/acd/pilotmonitoring/{pilot}`` (since 2.7.2, 004 L14433-14469),
    or with ``node`` the older form ``/{nodeId}/{pilot}`` (deprecated, 004 L14364-14397)."""
    path = f"{node}/{pilot}" if node is not None else pilot
    await client.request(
        "POST", f"{client.base_url}/acd/pilotmonitoring/{path}", f"monitoring of pilot {pilot}"
    )


async def discover_pilots(client: O2GClient) -> Pilots:
    """Every node's pilots; a node that fails is skipped with a warning (rule 1).

    Raises:
        SessionExpired: the session is gone.
        SourceError: ``GET /pbxs`` failed.
    """
    found = Pilots()
    name = client.config.name
    try:
        nodes = await node_ids(client)
    except O2GRequestError as exc:  # e.g. Tomcat's 404 while O2G redeploys
        failure = again(exc, client.servers.subscribed_once)
        if failure is exc:
            raise
        raise failure from exc
    for node in nodes:
        try:
            body = await node_pilots(client, node)
        except SessionExpired:
            raise
        except SourceError as exc:
            log.warning("o2g %s: pilots of node %s skipped: %s", name, node, exc)
            count_error(name, "pilots", type(exc).__name__)
            continue
        found.bodies[node] = body
        for pilot in body.get("pilotList") or []:
            number = pilot.get("number") if isinstance(pilot, dict) else None
            if number not in (None, ""):
                found.nodes[str(number)] = node
    return found


class PilotMonitor:
    """The pilots one session monitors, started one by one (rule 2)."""

    def __init__(self, client: O2GClient) -> None:
        self.client = client
        self.pending: dict[str, str | None] = {}  # pilot -> its node (None: unknown)
        self.monitored: set[str] = set()
        self.failure: SourceError | None = None  # the first transient failure of the last pass
        self.retrying = False  # keep_trying runs
        self._more = anyio.Event()  # set when pilots were added
        self._legacy = False  # the server only knows /acd/pilotmonitoring/{nodeId}/{pilot}

    def add(self, targets: Mapping[str, str | None]) -> None:
        """Pilots to monitor (number -> node); those already monitored are left alone."""
        for pilot, node in targets.items():
            if pilot not in self.monitored:
                self.pending[pilot] = node
                self._more.set()

    async def start(self) -> None:
        """One pass over the pending pilots: each is monitored, skipped for good, or kept pending.

        Raises:
            SessionExpired: the session is gone.
        """
        name, self.failure = self.client.config.name, None
        for pilot, node in list(self.pending.items()):
            try:
                await self._monitor(pilot, node)
            except SessionExpired:
                raise
            except FatalError as exc:
                log.warning("o2g %s: pilot %s not monitored (its events will not flow): %s", name, pilot, exc)
                count_error(name, "pilots", type(exc).__name__)
                del self.pending[pilot]
            except SourceError as exc:
                if self.failure is None and not self.retrying:
                    log.warning("o2g %s: monitoring of pilot %s failed, retrying: %s", name, pilot, exc)
                count_error(name, "pilots", type(exc).__name__)
                self.failure = self.failure or exc
            else:
                del self.pending[pilot]
                self.monitored.add(pilot)

    async def keep_trying(self, connected: Connected) -> None:
        """A job's session: start what is pending, then wait for more; raise while one fails."""
        while True:
            self._more = anyio.Event()
            await self.start()
            if self.failure is not None:
                raise self.failure
            log.info("o2g %s: every pilot is monitored", self.client.config.name)
            connected()
            await self._more.wait()

    async def _monitor(self, pilot: str, node: str | None) -> None:
        if not self._legacy:
            try:
                await monitor_pilot(self.client, pilot)
                return
            except O2GRequestError:
                if node is None:
                    raise
        await monitor_pilot(self.client, pilot, node)  # the form older servers know (before 2.7.2)
        if not self._legacy:
            self._legacy = True
            log.info(
                "o2g %s: pilot monitoring through /acd/pilotmonitoring/{nodeId}/{pilot}",
                self.client.config.name,
            )


def retry_monitoring(exc: BaseException) -> Decision:
    """A lost session is the session's to handle; anything else as :func:`streamd.retry.classify`."""
    return Fatal() if isinstance(exc, SessionExpired) else classify(exc)
