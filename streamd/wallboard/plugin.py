"""The wallboard as a daemon plugin: the hub, its Kafka feed and the HTTP routes.

``run_daemon(..., plugins=[wallboard_plugin])`` calls :func:`wallboard_plugin` in the root task
group before the HTTP app is built: it adds the feed API and page to ``rt.extra_routes``, starts
the Kafka feed, and closes every live stream as soon as the daemon starts stopping (so open
browsers do not hold the HTTP shutdown for its grace period). Without ``http.auth_token`` it logs
one warning at start naming what is open to anyone who reaches ``http.listen``. Once a second it
hands the daemon's component states to the hub (:meth:`StateHub.sync
<streamd.wallboard.hub.StateHub.sync>`: per-source state and freshness on the board).
"""

from __future__ import annotations

import logging
from functools import partial
from typing import TYPE_CHECKING

import anyio
from anyio.abc import TaskGroup

from streamd.wallboard.api import build_routes
from streamd.wallboard.consumer import run_feed
from streamd.wallboard.hub import StateHub

if TYPE_CHECKING:
    from streamd.app import Runtime

log = logging.getLogger("streamd.wallboard")


async def wallboard_plugin(rt: Runtime, tg: TaskGroup) -> StateHub | None:
    """Install the wallboard into a starting daemon; returns its hub (None when disabled)."""
    cfg = rt.config.wallboard
    if not cfg.enabled:
        return None
    hub = StateHub(
        max_agents=cfg.max_agents,
        max_metrics=cfg.max_metrics,
        replay=cfg.replay,
        client_buffer=cfg.client_buffer,
        stale_after=cfg.stale_after,
        stale_after_per_source=cfg.stale_after_per_source,
    )
    http = rt.config.http
    token = http.auth_token.get_secret_value() if http.auth_token else None
    if token is None:
        everywhere = " (every interface)" if http.host in ("0.0.0.0", "::") else ""
        log.warning(
            "http.auth_token is not set: agent names and states are open to anyone who reaches "
            "http.listen %s%s: the wallboard page (/wallboard), /api/v1/state and /api/v1/stream",
            http.listen,
            everywhere,
        )
    rt.extra_routes.extend(
        build_routes(
            hub,
            token=token,
            cors_origins=http.cors_origins,
            heartbeat=cfg.heartbeat,
            settings=cfg.display(),
        )
    )
    kafka = rt.config.kafka.model_copy(update={"bootstrap_servers": rt.bootstrap})
    jobs = rt.supervisor.jobs("wallboard", "feed")  # in /readyz; never affects readiness
    await tg.start(partial(run_feed, hub, kafka, jobs=jobs, poll_interval=cfg.topic_poll))
    tg.start_soon(_close_on_stop, rt, hub)
    tg.start_soon(_sync_sources, rt, hub)
    return hub


async def _sync_sources(rt: Runtime, hub: StateHub, interval: float = 1.0) -> None:
    """The components' states and the sources' freshness into the hub, until cancelled."""
    while True:
        hub.sync(rt.health.components)
        await anyio.sleep(interval)


async def _close_on_stop(rt: Runtime, hub: StateHub) -> None:
    await rt.stop.wait()
    hub.close()
