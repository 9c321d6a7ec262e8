"""The wallboard as a daemon plugin: the hub, its Kafka feed and the HTTP routes.

``run_daemon(..., plugins=[wallboard_plugin])`` calls :func:`wallboard_plugin` in the root task
group before the HTTP app is built: it adds the feed API and page to ``rt.extra_routes``, starts
the Kafka feed, and closes every live stream as soon as the daemon starts stopping (so open
browsers do not hold the HTTP shutdown for its grace period). Without ``http.auth_token`` it logs
one warning at start naming what is open to anyone who reaches ``http.listen``. Once a second it
hands the daemon's component states to the hub (:meth:`StateHub.sync
<streamd.wallboard.hub.StateHub.sync>`: per-source state and freshness on the board). In a
cluster, the ``placement`` job (:mod:`streamd.wallboard.placement`) tells the hub which replica
runs each source.
"""

from __future__ import annotations

import logging
from functools import partial
from typing import TYPE_CHECKING

import anyio
from anyio.abc import TaskGroup

from streamd.cluster.assign import control_topic, member_client_id, units
from streamd.cluster.webhooks import advertised_base
from streamd.retry import Retry, backoff
from streamd.runtime import Job
from streamd.wallboard.api import build_routes
from streamd.wallboard.consumer import run_feed
from streamd.wallboard.hub import StateHub
from streamd.wallboard.placement import placement_session, replica_name
from streamd.wallboard.sources import Placement

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
    extra = [_placement_job(rt, hub)] if rt.config.cluster.enabled else []
    await tg.start(partial(run_feed, hub, kafka, jobs=jobs, poll_interval=cfg.topic_poll, extra=extra))
    tg.start_soon(_close_on_stop, rt, hub)
    tg.start_soon(_sync_sources, rt, hub)
    return hub


def _placement_job(rt: Runtime, hub: StateHub) -> Job:
    """The ``placement`` job: which replica runs each of the cluster's sources (retried like the
    feed: it never fails for good)."""
    config = rt.config
    kafka = config.kafka.model_copy(update={"bootstrap_servers": rt.bootstrap})
    hub.placement = Placement(units=frozenset(s.name for s in config.sources))

    def me() -> str:
        url = advertised_base(config.http.host, rt.http_port)  # as the cluster member names itself
        return replica_name(member_client_id(kafka.client_id, url), "") if rt.http_port else ""

    session = partial(
        placement_session,
        hub,
        kafka,
        config.cluster.group_id,
        units([*(s.name for s in config.sources), *(s.name for s in config.sinks)]),
        control_topic(kafka.topic_prefix),
        me=me,
    )
    return Job(
        "placement", session, decide=lambda _: Retry(), delays=lambda: backoff(cap=10.0), catch=(Exception,)
    )


async def _sync_sources(rt: Runtime, hub: StateHub, interval: float = 1.0) -> None:
    """The components' states and the sources' freshness into the hub, until cancelled."""
    while True:
        hub.sync(rt.health.components)
        await anyio.sleep(interval)


async def _close_on_stop(rt: Runtime, hub: StateHub) -> None:
    await rt.stop.wait()
    hub.close()
