"""The wallboard feed applies a backlog in slices (issue 19 item 3): the event loop runs between
every :data:`~streamd.wallboard.consumer.APPLY_SLICE` records, however many Kafka holds."""

from __future__ import annotations

from functools import partial
from itertools import pairwise

import anyio
import pytest

from streamd.config_core import KafkaConfig
from streamd.embedded import EmbeddedBroker
from streamd.events import AgentState, State
from streamd.wallboard.consumer import APPLY_SLICE, run_feed
from streamd.wallboard.hub import StateHub
from tests.harness import publishing

pytestmark = [pytest.mark.anyio, pytest.mark.kafka]

PREFIX = "wbs."


async def test_a_backlog_is_applied_with_the_loop_running_between_slices() -> None:
    backlog = 6 * APPLY_SLICE
    async with EmbeddedBroker() as bootstrap:
        async with publishing(bootstrap, prefix=PREFIX) as emit:  # all in Kafka before the feed starts
            await emit(
                [
                    AgentState(vendor="sim", source="sim", agent_id=f"a{i}", state=State.AVAILABLE).to_event()
                    for i in range(backlog)
                ]
            )
        kafka = KafkaConfig(bootstrap_servers=bootstrap, topic_prefix=PREFIX)
        hub = StateHub()
        seen: list[int] = []  # the board's size at every turn of the loop

        async def watch() -> None:
            while len(hub.agents) < backlog:
                seen.append(len(hub.agents))
                await anyio.sleep(0)
            seen.append(len(hub.agents))

        async with anyio.create_task_group() as tg:
            await tg.start(partial(run_feed, hub, kafka, poll_interval=0.1))
            with anyio.fail_after(30):
                await watch()
            tg.cancel_scope.cancel()
    steps = [b - a for a, b in pairwise(seen) if b != a]
    assert sum(steps) == backlog
    assert len(steps) >= 6
    assert max(steps) <= APPLY_SLICE  # never more between two turns of the loop
