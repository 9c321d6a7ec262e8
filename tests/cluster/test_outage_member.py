"""A cluster member during a Kafka outage (docs/architecture.md "Several replicas", failure cases):
one member and the embedded broker, every client of the member going through a
:class:`FaultProxy` (the broker advertises the proxy).

- Every broker refusing connections (Kafka down for every replica): the member keeps its unit
  running past ``session_timeout / 2``, for as many probes as it takes, and says so; commits that
  succeed again take over from the proofs.
- A partition (connections accepted, nothing answered): no proof, the member is fenced and stops
  its unit; Kafka then refusing is no proof for a fenced member (only a commit brings it back).
- ``ride_through_outage: false``: a refusing broker fences like a partition.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest
from aiokafka.errors import KafkaError

from streamd.cluster.member import ClusterMember
from streamd.config_core import ClusterConfig, KafkaConfig
from streamd.embedded import EmbeddedBroker, free_port
from streamd.telemetry import Component, ComponentState
from tests.faults.proxy import FaultProxy

pytestmark = [pytest.mark.anyio, pytest.mark.kafka]


class Unit:
    """Records the starts and stops of the member's one unit."""

    def __init__(self) -> None:
        self.starts = 0
        self.stops = 0

    async def run(self, name: str) -> None:
        self.starts += 1
        try:
            await anyio.sleep_forever()
        finally:
            self.stops += 1


async def until(condition, what: str, timeout: float = 60) -> None:  # type: ignore[no-untyped-def]
    with anyio.fail_after(timeout):
        while not condition():
            await anyio.sleep(0.1)


def _ignore_unobserved_kafka_errors() -> None:
    """aiokafka shields a commit's request: when the member's session ends with a commit in flight
    the request fails later, unobserved (the daemon logs it); the test runner would raise it."""
    loop = asyncio.get_running_loop()
    previous = loop.get_exception_handler()

    def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        if isinstance(context.get("exception"), KafkaError):
            return
        if previous is not None:
            previous(loop, context)
        else:
            loop.default_exception_handler(context)

    loop.set_exception_handler(handler)


@asynccontextmanager
async def member_behind_proxy(
    *, ride_through: bool, group: str
) -> AsyncIterator[tuple[ClusterMember, Unit, FaultProxy]]:
    """A broker advertising a proxy, and one member owning the one unit ``a``."""
    port = free_port()
    broker = EmbeddedBroker(advertised_port=port)
    proxy = FaultProxy(port, broker.port).start()
    try:
        async with broker as bootstrap:
            cfg = ClusterConfig(
                enabled=True, group_id=group, session_timeout=10, ride_through_outage=ride_through
            )
            kafka = KafkaConfig(bootstrap_servers=bootstrap, topic_prefix=f"{group}.")
            unit = Unit()
            member = ClusterMember(cfg, kafka, ["a"], unit.run, Component("cluster", "cluster"))
            async with anyio.create_task_group() as tg:
                _ignore_unobserved_kafka_errors()
                tg.start_soon(member.session, lambda: None)
                await until(lambda: member.running == {"a"}, "the unit started")
                yield member, unit, proxy
                tg.cancel_scope.cancel()
    finally:
        proxy.close()


async def test_kafka_down_for_everyone_keeps_the_unit_running_and_a_partition_fences_it() -> None:
    async with member_behind_proxy(ride_through=True, group="ride") as (member, unit, proxy):
        proxy.mode = "refuse"
        # four proofs span more than session_timeout / 2 (5 s) without a commit
        await until(lambda: member.fencing.outage_proofs >= 4, "four proofs that Kafka is down")
        assert member.running == {"a"}
        assert (unit.starts, unit.stops) == (1, 0)  # never stopped
        assert member.fence.riding_through(anyio.current_time())
        assert member.component.state is ComponentState.RETRYING
        assert "Kafka down for every replica" in member.component.detail
        assert member.jobs["fencing"].state is ComponentState.RETRYING

        proxy.mode = "pass"  # the same broker, the group still knows the member: commits resume
        proofs = member.fencing.outage_proofs
        await until(lambda: not member.fence.fenced_by_commits(anyio.current_time()), "a commit again")
        assert (unit.starts, unit.stops) == (1, 0)

        proxy.mode = "blackhole"  # a partition: no proof, fenced after session_timeout / 2
        await until(lambda: member.running == frozenset(), "the unit stopped by the fence")
        assert unit.stops == 1
        assert member.fencing.outage_proofs == proofs
        assert "fenced" in member.component.detail
        # the broker going down now is no proof for a fenced member: the coordinator may have given
        # the unit away already; only a commit brings it back
        proxy.mode = "refuse"
        probes = member.fencing.probes
        await until(lambda: member.fencing.probes > probes + 1, "two probes while fenced")
        assert member.fencing.outage_proofs == proofs
        assert member.running == frozenset()


async def test_without_ride_through_a_refusing_broker_fences() -> None:
    async with member_behind_proxy(ride_through=False, group="strict") as (member, unit, proxy):
        proxy.mode = "refuse"
        await until(lambda: member.running == frozenset(), "the unit stopped by the fence")
        assert unit.stops == 1
        assert member.fencing.outage_proofs == 0
