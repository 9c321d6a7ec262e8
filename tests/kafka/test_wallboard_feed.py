"""The wallboard hub fed from the embedded broker: waits for the topics, rebuilds (with when each
source last published), follows live."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from functools import partial

import anyio
import pytest

from streamd.config_core import KafkaConfig
from streamd.embedded import EmbeddedBroker
from streamd.errors import TransientError
from streamd.events import AgentState, QueueMetric, State, utcnow
from streamd.wallboard.consumer import feed_session, run_feed
from streamd.wallboard.hub import StateHub
from tests.harness import publishing
from tests.helpers import until

pytestmark = [pytest.mark.anyio, pytest.mark.kafka]

PREFIX = "wb."


def agent(i: int, state: State) -> AgentState:
    return AgentState(vendor="sim", source="sim", agent_id=f"a{i}", state=state, agent_name=f"Agent {i}")


async def test_feed_waits_for_the_topics_rebuilds_on_restart_and_follows_live() -> None:
    async with EmbeddedBroker() as bootstrap:
        kafka = KafkaConfig(bootstrap_servers=bootstrap, topic_prefix=PREFIX)
        first = StateHub()
        async with anyio.create_task_group() as tg:
            await tg.start(partial(run_feed, first, kafka, poll_interval=0.1))
            await anyio.sleep(0.3)  # the feed is polling for topics that do not exist yet
            assert first.seq == 0
            async with publishing(bootstrap, prefix=PREFIX) as emit:
                events = [agent(i, State.AVAILABLE).to_event() for i in range(20)]
                events += [agent(i, State.BUSY).to_event() for i in range(5)]
                events.append(
                    QueueMetric(
                        vendor="sim", source="sim", queue_id="q1", metric="waiting_calls", value=3
                    ).to_event()
                )
                published = utcnow()
                await emit(events)
                acknowledged = utcnow()
                await until(
                    lambda: len(first.agents) == 20 and len(first.metrics) == 1, timeout=10, interval=0.02
                )
                assert first.agents["sim:a0"].state is State.BUSY
                assert first.agents["sim:a19"].state is State.AVAILABLE

                # a restarted daemon: a new hub rebuilds everything from the beginning at once
                second = StateHub()
                await tg.start(partial(run_feed, second, kafka, poll_interval=0.1))
                await until(  # (OrderedDicts: compare as dicts, the order depends on partitions)
                    lambda: (
                        dict(second.agents) == dict(first.agents)
                        and dict(second.metrics) == dict(first.metrics)
                    ),
                    timeout=10,
                    interval=0.02,
                )
                # and knows when the source last published (the Kafka time), not when it read it
                second.sync()
                last = second.sources["sim"].last_update
                assert last is not None
                assert published - timedelta(seconds=1) <= last <= acknowledged  # ms precision
                await anyio.sleep(0.05)
                assert second.sync() == 0

                # then both follow live changes
                await emit([agent(7, State.NOT_READY).to_event()])
                await until(
                    lambda: all(h.agents["sim:a7"].state is State.NOT_READY for h in (first, second)),
                    timeout=5,
                    interval=0.02,
                )
            tg.cancel_scope.cancel()


class BuggyHub(StateHub):
    """A hub that fails once on each agent in ``fail_once`` (a bug in the feed ends the session)."""

    def __init__(self, *fail_once: str) -> None:
        super().__init__()
        self.fail_once = set(fail_once)

    def update_agent(
        self, agent: AgentState, *, observed: datetime | None = None, key: str | None = None
    ) -> bool:
        if agent.agent_id in self.fail_once:
            self.fail_once.discard(agent.agent_id)
            raise RuntimeError(f"bug on {agent.agent_id}")
        return super().update_agent(agent, observed=observed, key=key)


def first_quick_then_slow() -> Iterator[float]:
    """A backoff whose first delay is 0 and every later one longer than the test waits."""
    yield 0.0
    while True:
        yield 60.0


async def test_backoff_restarts_after_a_session_that_had_assigned_partitions() -> None:
    async with EmbeddedBroker() as bootstrap:
        kafka = KafkaConfig(bootstrap_servers=bootstrap, topic_prefix="wb2.")
        hub = BuggyHub("a1", "a2")
        async with anyio.create_task_group() as tg:
            async with publishing(bootstrap, prefix="wb2.") as emit:
                await emit([agent(0, State.AVAILABLE).to_event()])
                await tg.start(partial(run_feed, hub, kafka, poll_interval=0.1, delays=first_quick_then_slow))
                await until(lambda: "sim:a0" in hub.agents, timeout=10, interval=0.02)
                await emit([agent(1, State.AVAILABLE).to_event()])  # fails the healthy session: wait 0
                await until(lambda: "sim:a1" in hub.agents, timeout=10, interval=0.02)
                # a second failure after another healthy session waits the *first* delay again, not 60 s
                await emit([agent(2, State.AVAILABLE).to_event()])
                await until(lambda: "sim:a2" in hub.agents, timeout=5, interval=0.02)
            tg.cancel_scope.cancel()


async def test_feed_session_is_plain_it_raises_what_failed_after_reporting_healthy() -> None:
    """The session has no retry loop: a bug ends it with that very error (its runner retries)."""
    async with EmbeddedBroker() as bootstrap:
        kafka = KafkaConfig(bootstrap_servers=bootstrap, topic_prefix="wb3.")
        hub = BuggyHub("a1")
        healthy: list[bool] = []
        async with publishing(bootstrap, prefix="wb3.") as emit:
            await emit([agent(0, State.AVAILABLE).to_event(), agent(1, State.AVAILABLE).to_event()])
            with anyio.fail_after(10), pytest.raises(RuntimeError, match="bug on a1"):
                await feed_session(hub, kafka, lambda: healthy.append(True), poll_interval=0.1)
        assert healthy == [True]  # both topics exist (the publisher made them): one assignment
        assert "sim:a1" not in hub.agents  # the failed update changed nothing


async def test_feed_session_fails_as_a_transient_error_when_kafka_is_unreachable() -> None:
    async with EmbeddedBroker() as bootstrap:
        pass  # started and stopped: nothing listens there any more
    kafka = KafkaConfig(bootstrap_servers=bootstrap, topic_prefix="wb4.")
    with anyio.fail_after(30), pytest.raises(TransientError):
        await feed_session(StateHub(), kafka, lambda: None)
