"""The calabrio-rtdc sink end to end through the embedded broker: Kafka -> sink -> simulator, and its
dead letters through the pipeline back to Kafka."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import anyio
import orjson
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from streamd.config_core import KafkaConfig
from streamd.embedded import EmbeddedBroker
from streamd.events import AgentState, Event, State
from streamd.publish.encoding import encode
from streamd.runtime import Jobs
from streamd.sim.calabrio import CalabrioSimulator, SimAgent
from streamd.sinks.calabrio_rtdc import CalabrioRtdcSinkConfig
from streamd.sinks.calabrio_rtdc.sink import CalabrioRtdcSink
from streamd.telemetry import ComponentState
from tests.harness import kafka_publisher, publishing
from tests.kafka_helpers import read_back
from tests.sources.calabrio_tls import tls_front

pytestmark = [pytest.mark.anyio, pytest.mark.kafka]

T0 = datetime(2026, 1, 1, 9, 0, tzinfo=UTC)


def agent_states(source: str, n: int) -> list[Event]:
    cycle = [State.AVAILABLE, State.BUSY, State.AFTER_CALL_WORK, State.NOT_READY]
    return [
        AgentState(
            vendor="o2g",
            source=source,
            agent_id=str(1001 + i % 2),
            state=cycle[i % 4],
            since=T0 + timedelta(seconds=i),
        ).to_event()
        for i in range(n)
    ]


async def publish(bootstrap: str, events: list[Event]) -> None:
    async with kafka_publisher(bootstrap) as publisher:
        await publisher.ensure_topics(["it.agent-state", "it.deadletter"])
        for event in events:
            await (await publisher.send(encode(event, "it.")))


async def committed(bootstrap: str, group: str, topic: str) -> int:
    """Sum of the group's committed offsets over the topic's partitions."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        await consumer.topics()
        offsets = [
            await consumer.committed(TopicPartition(topic, p)) for p in consumer.partitions_for_topic(topic)
        ]
        return sum(o or 0 for o in offsets)
    finally:
        await consumer.stop()


async def run_sink_until(
    sink: CalabrioRtdcSink, sim: CalabrioSimulator, bootstrap: str, records: int
) -> None:
    """Run the sink (its dead letters published through a pipeline) until it committed ``records``
    offsets, then stop it."""
    async with publishing(bootstrap, prefix="it.", source=sink.name) as emit, anyio.create_task_group() as tg:
        await tg.start(sink.run, emit)
        with anyio.fail_after(15):
            while await committed(bootstrap, "rtdc-test", "it.agent-state") < records:
                await anyio.sleep(0.05)
        tg.cancel_scope.cancel()


async def test_sink_forwards_one_sources_states_commits_and_resumes_after_restart() -> None:
    garbage = Event(topic="agent-state", type="streamd.agent.State", source="pbx1", key="pbx1:x", data="nope")
    first = [*agent_states("pbx1", 6), *agent_states("other", 3), garbage]
    async with EmbeddedBroker() as bootstrap, CalabrioSimulator(agents=2, acd_base=1001) as sim:
        kafka = KafkaConfig(bootstrap_servers=bootstrap, topic_prefix="it.")
        await publish(bootstrap, first)
        cfg = CalabrioRtdcSinkConfig.model_validate(
            {"kind": "calabrio-rtdc", "from": "pbx1", "url": sim.url, "username": sim.username,
             "password": sim.password, "flush_interval": 0.1, "group_id": "rtdc-test"}
        )  # fmt: skip

        def sink() -> CalabrioRtdcSink:
            jobs = Jobs.standalone(cfg.name, "sink", delays=lambda: itertools.repeat(0.05))
            return CalabrioRtdcSink(cfg, kafka, jobs=jobs)

        await run_sink_until(sink(), sim, bootstrap, len(first))
        after_first = list(sim.captured)
        await publish(bootstrap, agent_states("pbx1", 8)[6:])
        await run_sink_until(sink(), sim, bootstrap, len(first) + 2)  # a restart: a new consumer, same group
        dead = await anyio.to_thread.run_sync(read_back, bootstrap, "it.deadletter", 1)
    per_agent = {
        a: [r["gisStateIdentifier"] for r in after_first if r["acdAgentId"] == a] for a in ("1001", "1002")
    }
    assert per_agent == {"1001": [3, 6, 3], "1002": [4, 2, 4]}  # only pbx1's, each agent in order
    assert len(after_first) == 6
    ms = int(T0.timestamp() * 1000)
    resumed = sorted(sim.captured[6:], key=lambda r: r["acdAgentId"])
    assert resumed == [  # exactly the two new states, whatever their partitions' order
        {"acdAgentId": "1001", "gisStateIdentifier": 6, "timestamp": ms + 6000, "reasonCode": None},
        {"acdAgentId": "1002", "gisStateIdentifier": 2, "timestamp": ms + 7000, "reasonCode": None},
    ]
    assert len(sim.captured) == 8  # nothing re-sent after the restart
    assert len(dead) == 1
    letter = orjson.loads(dead[0].value or b"")
    assert (letter["source"], letter["stage"], letter["raw"]) == ("calabrio-rtdc-pbx1", "sink", '"nope"')
    assert sim.requests[-1].method == "DELETE"


async def run_sink_until_failed(sink: CalabrioRtdcSink, bootstrap: str) -> str:
    """Run the sink under a daemon's policy until it is ``failed``; its reason."""
    async with publishing(bootstrap, prefix="it.", source=sink.name) as emit, anyio.create_task_group() as tg:
        await tg.start(sink.run, emit)
        with anyio.fail_after(15):
            while sink.component.state is not ComponentState.FAILED:
                await anyio.sleep(0.05)
        tg.cancel_scope.cancel()
    return sink.component.detail


def failing_sink(cfg: CalabrioRtdcSinkConfig, kafka: KafkaConfig) -> CalabrioRtdcSink:
    jobs = Jobs.standalone(cfg.name, "sink", delays=lambda: itertools.repeat(0.05), failed_retry=3600)
    return CalabrioRtdcSink(cfg, kafka, jobs=jobs)


async def test_a_systematic_rejection_fails_the_sink_with_calabrios_answer() -> None:
    async with (
        EmbeddedBroker() as bootstrap,
        CalabrioSimulator(agents=2, acd_base=1001, capture_body="array") as sim,
    ):
        kafka = KafkaConfig(bootstrap_servers=bootstrap, topic_prefix="it.")
        await publish(bootstrap, agent_states("pbx1", 30))
        cfg = CalabrioRtdcSinkConfig.model_validate(
            {"kind": "calabrio-rtdc", "from": "pbx1", "url": sim.url, "username": sim.username,
             "password": sim.password, "flush_interval": 0.1, "group_id": "rtdc-rejected",
             "body": "object"}  # the simulated tenant takes arrays only: every record is refused
        )  # fmt: skip
        reason = await run_sink_until_failed(failing_sink(cfg, kafka), bootstrap)
        done = await committed(bootstrap, "rtdc-rejected", "it.agent-state")
        dead = await anyio.to_thread.run_sync(read_back, bootstrap, "it.deadletter", 30, 2.0)
    assert reason.startswith("calabrio-rtdc-pbx1: Calabrio rejected the last")
    assert "expected a JSON array, got a JSON object" in reason
    assert sim.captured == []
    assert done < 30  # the batch that failed is read again when the sink is retried
    assert len(dead) < cfg.reject_limit  # not one dead letter per record, for ever
    assert sim.requests[-1].method == "DELETE"


async def test_an_untrusted_certificate_fails_the_sink_with_its_cause() -> None:
    async with (
        EmbeddedBroker() as bootstrap,
        CalabrioSimulator(agents=2, acd_base=1001) as sim,
        tls_front(sim.url) as https,
    ):
        kafka = KafkaConfig(bootstrap_servers=bootstrap, topic_prefix="it.")
        await publish(bootstrap, agent_states("pbx1", 4))
        cfg = CalabrioRtdcSinkConfig.model_validate(
            {"kind": "calabrio-rtdc", "from": "pbx1", "url": https, "username": sim.username,
             "password": sim.password, "flush_interval": 0.1, "group_id": "rtdc-tls"}
        )  # fmt: skip
        reason = await run_sink_until_failed(failing_sink(cfg, kafka), bootstrap)
        done = await committed(bootstrap, "rtdc-tls", "it.agent-state")
    assert reason.startswith("TLS certificate not trusted")
    assert sim.requests == []
    assert done == 0


async def test_agents_are_mapped_by_their_calabrio_acd_id_and_an_unmapped_one_is_dead_lettered() -> None:
    wfm = [SimAgent(101, "1001", "Ana", "Silva"), SimAgent(102, "ACD-2", "Ben", "Okafor")]
    states = [
        AgentState(vendor="o2g", source="pbx1", agent_id=agent, state=State.AVAILABLE, since=T0).to_event()
        for agent in ("1001", "1002", "1003")
    ]
    async with EmbeddedBroker() as bootstrap, CalabrioSimulator(agents=wfm) as sim:
        kafka = KafkaConfig(bootstrap_servers=bootstrap, topic_prefix="it.")
        await publish(bootstrap, states)
        cfg = CalabrioRtdcSinkConfig.model_validate(
            {"kind": "calabrio-rtdc", "from": "pbx1", "url": sim.url, "username": sim.username,
             "password": sim.password, "flush_interval": 0.1, "group_id": "rtdc-test",
             "agent_map": {"1002": "ACD-2"}}  # 1001 is mapped by its acdId, 1003 by nothing
        )  # fmt: skip
        jobs = Jobs.standalone(cfg.name, "sink", delays=lambda: itertools.repeat(0.05))
        await run_sink_until(CalabrioRtdcSink(cfg, kafka, jobs=jobs), sim, bootstrap, len(states))
        dead = await anyio.to_thread.run_sync(read_back, bootstrap, "it.deadletter", 1)
    assert sorted(r["acdAgentId"] for r in sim.captured) == ["1001", "ACD-2"]
    (reference,) = sim.calls("/api/rest/scheduling/agent")
    assert reference.params == {"fullDetail": "true"}  # only the full detail carries acdId
    letter = orjson.loads(dead[0].value or b"")
    assert (letter["source"], letter["stage"], letter["error_type"]) == (
        "calabrio-rtdc-pbx1",
        "sink",
        "unmapped_agent",
    )
    assert letter["error"] == (
        "agent 1003 of source pbx1 has no Calabrio acdAgentId: no Calabrio agent has acdId '1003' "
        "(Application Management > Users > Agents) and agent_map does not name it"
    )
    assert orjson.loads(letter["raw"])["agent_id"] == "1003"
