"""The ``calabrio-rtdc`` sink's agent directory: the Calabrio agents' ``acdId`` (rule 9).

Rules: see :mod:`streamd.sinks.calabrio_rtdc` (rule 9).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import httpx

from streamd.errors import StreamdError
from streamd.sources.calabrio.normalize import parse_agents
from streamd.sources.http import check_status, httpx_errors
from streamd.telemetry import count_error

if TYPE_CHECKING:
    from streamd.sinks.calabrio_rtdc.config import CalabrioRtdcSinkConfig

log = logging.getLogger("streamd.sinks.calabrio_rtdc")


REREAD_AFTER = 60.0
"""Seconds since the last read before an agent unknown to it makes the directory read again."""


class AgentDirectory:
    """The ``acdId`` of every Calabrio agent, read with ``fullDetail=true`` (only the full detail
    carries ``acdId``, 002 L671-686), again every ``reference_refresh``, and again (at most once
    per :data:`REREAD_AFTER`) when a state names an agent the last read did not know.

    Args:
        cfg: the sink config.
        clock: monotonic seconds (tests inject one).
    """

    def __init__(self, cfg: CalabrioRtdcSinkConfig, clock: Callable[[], float] = time.monotonic) -> None:
        self.cfg, self.clock = cfg, clock
        self.acd_ids: frozenset[str] | None = None
        """None until the first read (and always without ``map_by_acd_id``)."""
        self._loaded_at: float | None = None
        self._failing = False
        self._warned: str | None = None  # the unusable-list warning last given (once per kind)

    async def refresh(self, client: httpx.AsyncClient) -> frozenset[str] | None:
        """The current ``acdId`` set, re-read when due; None when agents are not mapped automatically.

        Raises:
            StreamdError: the first read failed (nothing can be mapped yet; the session retries).
                A later failure keeps the last good copy, is counted and logged once.
        """
        if not self.cfg.map_by_acd_id:
            return None
        if self._loaded_at is not None and self.clock() - self._loaded_at < self.cfg.reference_refresh:
            return self.acd_ids
        return await self._read(client)

    async def reread(self, client: httpx.AsyncClient) -> frozenset[str] | None:
        """The ``acdId`` set read again for an agent the last read did not know (a hire since), at
        most once per :data:`REREAD_AFTER` seconds; else the last copy.

        Raises:
            StreamdError: as :meth:`refresh` (only before a first good read).
        """
        if not self.cfg.map_by_acd_id:
            return None
        if self._loaded_at is not None and self.clock() - self._loaded_at < REREAD_AFTER:
            return self.acd_ids
        return await self._read(client)

    async def _read(self, client: httpx.AsyncClient) -> frozenset[str] | None:
        cfg = self.cfg
        try:
            with httpx_errors():
                response = await client.get(cfg.agents_path, params={"fullDetail": "true"})
            check_status(response, f"calabrio GET {cfg.agents_path}")
            agents, _ = parse_agents(cfg.name, response.content)
        except StreamdError as exc:
            if self.acd_ids is None:
                raise
            self._loaded_at = self.clock()
            count_error(cfg.name, "reference", type(exc).__name__)
            if not self._failing:
                log.warning(
                    "%s: cannot re-read the Calabrio agents, mapping with the last copy: %s", cfg.name, exc
                )
            self._failing = True
            return self.acd_ids
        self._loaded_at, self._failing = self.clock(), False
        self.acd_ids = frozenset(a.acd_id for a in agents.values() if a.acd_id)
        self._warn_if_unusable(len(agents))
        return self.acd_ids

    def _warn_if_unusable(self, agents: int) -> None:
        """One warning when the list maps nobody (again after a list that maps someone)."""
        cfg = self.cfg
        if self.acd_ids:
            self._warned = None
            return
        kind = "empty" if not agents else "no_acd_id"
        if kind == self._warned:
            return
        self._warned = kind
        if kind == "empty":
            log.warning(
                "%s: Calabrio answered %s with no agents (a permission the API user lacks?): "
                "every agent not in agent_map is dead-lettered",
                cfg.name,
                cfg.agents_path,
            )
        else:
            log.warning(
                "%s: none of the %d Calabrio agents has an acdId: every agent not in agent_map is "
                "dead-lettered (set the agents' ACD ID in Calabrio, or agent_map)",
                cfg.name,
                agents,
            )
