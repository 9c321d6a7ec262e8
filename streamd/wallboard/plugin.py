"""The wallboard as a daemon plugin: the hub, its Kafka feed and the HTTP routes.

``run_daemon(..., plugins=[wallboard_plugin])`` calls :func:`wallboard_plugin` in the root task
group before the HTTP app is built: it adds the feed API and page to ``rt.extra_routes``, starts
the Kafka feed, and closes every live stream as soon as the daemon starts stopping (so open
browsers do not hold the HTTP shutdown for its grace period).
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING

from anyio.abc import TaskGroup

from streamd.wallboard.api import build_routes
from streamd.wallboard.consumer import run_feed
from streamd.wallboard.hub import StateHub

if TYPE_CHECKING:
    from streamd.app import Runtime


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
    )
    http = rt.config.http
    token = http.auth_token.get_secret_value() if http.auth_token else None
    rt.extra_routes.extend(
        build_routes(hub, token=token, cors_origins=http.cors_origins, heartbeat=cfg.heartbeat)
    )
    kafka = rt.config.kafka.model_copy(update={"bootstrap_servers": rt.bootstrap})
    jobs = rt.supervisor.jobs("wallboard", "feed")  # in /readyz; never affects readiness
    await tg.start(partial(run_feed, hub, kafka, jobs=jobs, poll_interval=cfg.topic_poll))
    tg.start_soon(_close_on_stop, rt, hub)
    return hub


async def _close_on_stop(rt: Runtime, hub: StateHub) -> None:
    await rt.stop.wait()
    hub.close()
