"""The one Kafka reader (``TopicReader``) against the embedded broker: every partition, topics that
appear later, positions kept, group commits, and no topic auto-created by looking for it."""

from __future__ import annotations

import anyio
import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from streamd.config_core import KafkaConfig
from streamd.embedded import EmbeddedBroker
from streamd.errors import TransientError
from streamd.events import AgentState, State
from streamd.publish.consume import ConsumedRecord, TopicReader
from tests.harness import publishing

pytestmark = [pytest.mark.anyio, pytest.mark.kafka]


def agent(i: int, source: str = "sim") -> AgentState:
    return AgentState(vendor="sim", source=source, agent_id=f"a{i}", state=State.BUSY)


async def read_until(reader: TopicReader, count: int) -> list[ConsumedRecord]:
    out: list[ConsumedRecord] = []
    with anyio.fail_after(10):
        while len(out) < count:
            out += await reader.read(wait=0.1, max_records=100)
    return out


async def topics(bootstrap: str) -> list[str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        return list(await admin.list_topics())
    finally:
        await admin.close()


async def test_reads_every_partition_and_picks_up_a_topic_created_later_without_creating_it() -> None:
    async with EmbeddedBroker() as bootstrap:
        kafka = KafkaConfig(bootstrap_servers=bootstrap, topic_prefix="rd.")
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        await admin.create_topics([NewTopic("rd.agent-state", 4, 1)])
        async with publishing(bootstrap, prefix="rd.") as emit:
            await emit([agent(i).to_event() for i in range(20)])
            async with TopicReader(kafka, ["rd.agent-state", "rd.later"]) as reader:
                assert await reader.assign() == ["rd.agent-state"]
                assert reader.missing == ["rd.later"]
                assert {tp.partition for tp in reader.assigned} == {0, 1, 2, 3}
                first = await read_until(reader, 20)
                assert {r.partition for r in first} == {0, 1, 2, 3}  # the keys spread over them
                assert sorted(AgentState.from_json(r.value).agent_id for r in first) == sorted(
                    f"a{i}" for i in range(20)
                )
                assert first[0].headers["ce_source"] == b"streamd/sim"
                assert "rd.later" not in await topics(bootstrap)  # looking did not auto-create it

                await admin.create_topics([NewTopic("rd.later", 2, 1)])
                await admin.close()
                await emit([agent(99).to_event()])  # after the first read: only this one is new
                with anyio.fail_after(10):
                    while not await reader.assign():
                        await anyio.sleep(0.05)
                assert reader.missing == []
                again = await read_until(reader, 1)
        # positions kept: reset ones would have returned the old records of a99's partition first
        assert [AgentState.from_json(r.value).agent_id for r in again] == ["a99"]


async def test_a_group_reader_resumes_after_its_commit_and_a_groupless_one_cannot_commit() -> None:
    async with EmbeddedBroker() as bootstrap:
        kafka = KafkaConfig(bootstrap_servers=bootstrap, topic_prefix="gr.")
        async with publishing(bootstrap, prefix="gr.") as emit:
            await emit([agent(i).to_event() for i in range(5)])
            async with TopicReader(kafka, ["gr.agent-state"], group_id="g1") as reader:
                await reader.assign()
                assert len(await read_until(reader, 5)) == 5
                await reader.commit()
            await emit([agent(5).to_event()])
            async with TopicReader(kafka, ["gr.agent-state"], group_id="g1") as reader:
                await reader.assign()
                resumed = await read_until(reader, 1)
            async with TopicReader(kafka, ["gr.agent-state"]) as groupless:
                await groupless.assign()
                everything = await read_until(groupless, 6)
                with pytest.raises(ValueError, match="commits nothing"):
                    await groupless.commit()
    assert [AgentState.from_json(r.value).agent_id for r in resumed] == ["a5"]
    assert len(everything) == 6  # no group: from the earliest offset


async def test_an_unreachable_kafka_is_a_transient_error() -> None:
    async with EmbeddedBroker() as bootstrap:
        pass  # started and stopped: nothing listens there any more
    kafka = KafkaConfig(bootstrap_servers=bootstrap)
    with anyio.fail_after(30), pytest.raises(TransientError):
        async with TopicReader(kafka, ["x"]):
            pass
