"""The Calabrio simulator's facade: configuration, scripting and the served app (package rules)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from starlette.types import ASGIApp

from streamd.sim.calabrio import faults
from streamd.sim.calabrio.app import SESSION_COOKIE, build_app
from streamd.sim.calabrio.wfm import SimScheduled
from streamd.sim.calabrio.world import CalabrioWorld, SimAgent, default_agents, wall_ms
from streamd.sim.script import FaultScript, LoggedRequest, RequestLog
from streamd.sim.server import serving


@dataclass(slots=True)
class CalabrioSimulator:
    """See the package docstring. Use as ``async with CalabrioSimulator(...) as sim: sim.url``."""

    agents: int | list[SimAgent] = 5
    acd_base: int = 5001
    """The first ACD id of generated agents (``agents`` a number)."""
    username: str = "api@example.com"
    password: str = "secret"
    clock_ms: Callable[[], int] = wall_ms
    auto: bool = False
    seed: int = 0
    max_late_ms: int = 0
    expire_after: int | None = None
    session_idle_ms: int | None = None
    reject_acd_ids: set[str] = field(default_factory=set)
    capture_body: Literal["any", "array", "object"] = "any"
    capture_format: Literal["any", "json", "multipart"] = "any"
    """The content types the capture endpoint takes (another one: 415)."""
    capture_field: str = "data"
    """The form field holding the records' JSON text in a multipart capture request."""
    ignore_page_number: bool = False
    deviate: float = 0.0
    tenant_zone: str = "UTC"
    """The tenant's time zone (schedule dates)."""
    host: str = "127.0.0.1"
    port: int = 0
    url: str = ""
    captured: list[dict[str, Any]] = field(default_factory=list)
    rejected: list[dict[str, Any]] = field(default_factory=list)
    bodies: list[tuple[str, Any]] = field(default_factory=list)
    """``(path, body)`` of every request that carried one, in order."""
    authorizations: int = 0
    world: CalabrioWorld = field(init=False)
    faults: FaultScript = field(default_factory=FaultScript)
    log: RequestLog = field(init=False)
    _serving: contextlib.AbstractAsyncContextManager[str] | None = None

    def __post_init__(self) -> None:
        agents = (
            list(self.agents) if isinstance(self.agents, list) else default_agents(self.agents, self.acd_base)
        )
        self.world = CalabrioWorld(
            agents, self.clock_ms, self.auto, self.seed, self.max_late_ms, self.deviate
        )
        self.world.tenant_zone = self.tenant_zone
        self.log = RequestLog(build_app(self), clock=lambda: self.clock_ms() / 1000)

    # --- the world ---------------------------------------------------------------------------

    @property
    def agent_list(self) -> list[SimAgent]:
        """The simulated agents."""
        return list(self.world.agents)

    @property
    def adherence(self) -> dict[int, dict[str, Any]]:
        """Adherence overrides per agent id."""
        return self.world.adherence

    @property
    def deviated_activities(self) -> set[tuple[int, int]]:
        """``(agentId, timestamp)`` of every activity served deviating (its own fields or its row's)."""
        return self.world.deviated_activities

    @property
    def deviated_adherence(self) -> set[int]:
        """``agentId`` of every adherence row served deviating."""
        return self.world.deviated_adherence

    @property
    def deviated(self) -> list[str]:
        """The JSON path each deviating input changed (relative to that input), each time it was served."""
        return self.world.deviated

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
        self.world.add_activity(agent_id, timestamp, state, reason_code, visible_at=visible_at)

    def set_adherence(self, agent_id: int, date: str | None = None, **fields: Any) -> None:
        """Override adherence figures of one agent (e.g. ``scheduleAdherence=91.5``), of one
        ``date`` only when given."""
        target = self.world.adherence if date is None else self.world.adherence_by_date.setdefault(date, {})
        target.setdefault(agent_id, {}).update(fields)

    def set_schedule(self, agent_id: int, *activities: SimScheduled) -> None:
        """The agent's scheduled activities (Schedule Details)."""
        self.world.schedules[agent_id] = sorted(activities, key=lambda a: a.start_ms)

    def set_contacts(self, total: int | str, with_audio: int, with_video: int | None = None) -> None:
        """The contact monitoring counts of the past 15 minutes (``total`` may be text, as in the seed)."""
        self.world.contacts = {"total": total, "totalWithAudio": with_audio}
        if with_video is not None:
            self.world.contacts["totalWithVideo"] = with_video

    def expire_sessions(self) -> None:
        """Invalidate every session now (the next call gets 401)."""
        self.world.sessions.clear()

    # --- faults ------------------------------------------------------------------------------

    def fail_next(
        self, status: int, *, path: str | None = None, times: int = 1, retry_after: str | None = None
    ) -> None:
        """Answer the next ``times`` requests (to ``path``, if given) with ``status``."""
        self.faults.add(path or faults.ANY, faults.refused(status, retry_after), times=times)

    def garble_next(self, kind: str, *, path: str | None = None, times: int = 1) -> None:
        """Answer the next ``times`` requests (to ``path``, if given) 200 with an unreadable body
        (``kind``: a key of :data:`~.faults.GARBLED`)."""
        self.faults.add(path or faults.ANY, faults.garbled(kind), times=times)

    # --- the request log ---------------------------------------------------------------------

    @property
    def requests(self) -> list[LoggedRequest]:
        """Every answered request, in order."""
        return self.log.entries

    def calls(self, path: str) -> list[LoggedRequest]:
        """The logged requests to exactly ``path``."""
        return [r for r in self.log.entries if r.path == path]

    def bodies_to(self, path: str) -> list[Any]:
        """The bodies of the requests to ``path`` that carried one, in order."""
        return [body for p, body in self.bodies if p == path]

    @staticmethod
    def session_of(request: LoggedRequest) -> str | None:
        """The session cookie a logged request carried, if any."""
        for part in request.headers.get("cookie", "").split(";"):
            name, _, value = part.strip().partition("=")
            if name == SESSION_COOKIE:
                return value
        return None

    # --- lifecycle ---------------------------------------------------------------------------

    def app(self) -> ASGIApp:
        """The ASGI app with its request log (also usable with ``httpx.ASGITransport``)."""
        return self.log

    async def __aenter__(self) -> CalabrioSimulator:
        self._serving = serving(self.app(), host=self.host, port=self.port)
        self.url = await self._serving.__aenter__()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._serving is not None
        await self._serving.__aexit__(None, None, None)
