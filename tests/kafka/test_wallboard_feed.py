"""The wallboard hub fed from the embedded broker: waits for the topics, rebuilds, follows live."""

from __future__ import annotations

from functools import partial

import anyio
import pytest

from streamd.config_core import KafkaConfig
from streamd.embedded import EmbeddedBroker
from streamd.events import AgentState, QueueMetric, State
from streamd.wallboard.consumer import run_feed
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
            await tg.start(partial(run_feed, first, kafka, bootstrap, poll_interval=0.1))
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
                await emit(events)
                await until(
                    lambda: len(first.agents) == 20 and len(first.metrics) == 1, timeout=10, interval=0.02
                )
                assert first.agents["sim:a0"].state is State.BUSY
                assert first.agents["sim:a19"].state is State.AVAILABLE

                # a restarted daemon: a new hub rebuilds everything from the beginning at once
                second = StateHub()
                await tg.start(partial(run_feed, second, kafka, bootstrap, poll_interval=0.1))
                await until(  # (OrderedDicts: compare as dicts, the order depends on partitions)
                    lambda: (
                        dict(second.agents) == dict(first.agents)
                        and dict(second.metrics) == dict(first.metrics)
                    ),
                    timeout=10,
                    interval=0.02,
                )

                # then both follow live changes
                await emit([agent(7, State.NOT_READY).to_event()])
                await until(
                    lambda: all(h.agents["sim:a7"].state is State.NOT_READY for h in (first, second)),
                    timeout=5,
                    interval=0.02,
                )
            tg.cancel_scope.cancel()
