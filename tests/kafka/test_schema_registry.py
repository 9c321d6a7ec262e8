"""Schema Registry (issue 23 item 1): registration at start against a fake of the registry's REST
calls (tests/fakes/schema_registry.py), and ``confluent-json`` records read back from the embedded
broker by confluent-kafka's own JSON deserializer, which validates them against the registered
schema."""

from __future__ import annotations

import json
import struct
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import jsonschema
import orjson
import pytest
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.json_schema import JSONDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext, SerializationError

from streamd.config import Config
from streamd.config_core import KafkaConfig
from streamd.embedded import EmbeddedBroker
from streamd.errors import FatalError
from streamd.events import AgentState, DeadLetter, Event
from streamd.publish import registry
from streamd.publish.encoding import confluent_frame, confluent_json, encode, header_dict
from streamd.publish.pipeline import Pipeline
from streamd.publish.spool import Spool
from tests.fakes.schema_registry import FakeSchemaRegistry, serving_registry
from tests.harness import kafka_publisher
from tests.kafka_helpers import read_topic

pytestmark = pytest.mark.anyio


def kafka_config(url: str, **registry_fields: Any) -> KafkaConfig:
    return KafkaConfig.model_validate(
        {"value_format": "confluent-json", "schema_registry": {"url": url, **registry_fields}}
    )


def agent_state(agent: str, state: str = "available") -> Event:
    return AgentState(
        vendor="alvaria",
        source="cloud1",
        agent_id=agent,
        state=state,  # type: ignore[arg-type]
        since=datetime(2024, 5, 1, 12, 0, tzinfo=UTC),
    ).to_event()


# -- what is registered ------------------------------------------------------------------------


def test_a_topic_schema_is_any_of_its_types_and_validates_their_values() -> None:
    topics = registry.topic_types({"calabrio"})
    assert topics["calabrio.agent-state"] == ["calabrio.realtime.AgentActivity"]
    assert topics["agent-state"] == ["streamd.agent.State"]
    assert topics["source-status"] == ["streamd.source.Gap", "streamd.source.Status"]
    with pytest.raises(ValueError, match=r"streamd\.new\.Type: add its topic"):
        registry.topic_of("streamd.new.Type")
    assert "deadletter" in topics
    assert not any(t.startswith(("o2g.", "alvaria.", "xima.")) for t in topics)
    assert set(registry.topic_types({"o2g"})["o2g.agent"]) >= {
        "o2g.agent.OnAgentStateChanged",
        "o2g.agent.UnknownO2GEvent",
    }

    schemas = registry.subject_schemas(registry.topic_types({"o2g"}), "p.")
    agent = schemas["p.o2g.agent-value"]
    assert len(agent["anyOf"]) == len(registry.topic_types({"o2g"})["o2g.agent"])
    jsonschema.Draft202012Validator.check_schema(agent)
    state = schemas["p.agent-state-value"]
    value = orjson.loads(encode(agent_state("a1"), "p.").value)
    jsonschema.Draft202012Validator(state).validate(value)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft202012Validator(state).validate({"agent_id": 7})


async def test_new_subjects_are_checked_then_registered_and_reused_on_the_next_start() -> None:
    fake = FakeSchemaRegistry(user_info="key:secret")
    async with serving_registry(fake) as url:
        config = kafka_config(url, username="key", password="secret")
        ids = await registry.register(config, {"calabrio"})
        subjects = sorted(fake.subjects)
        assert subjects == [
            "streamd.agent-adherence-value",
            "streamd.agent-state-value",
            "streamd.calabrio.adherence-value",
            "streamd.calabrio.agent-state-value",
            "streamd.calabrio.reference-value",
            "streamd.deadletter-value",
            "streamd.queue-metrics-value",
            "streamd.source-status-value",
        ]
        assert ids == {s.removesuffix("-value"): fake.subjects[s][0] for s in subjects}
        first = "/subjects/streamd.agent-adherence-value"
        assert fake.calls[:3] == [
            ("POST", first),
            ("POST", "/compatibility/subjects/streamd.agent-adherence-value/versions/latest"),
            ("POST", first + "/versions"),
        ]
        fake.calls.clear()
        assert await registry.register(config, {"calabrio"}) == ids  # same schemas: found, not written
        assert {path.split("/")[1] for _, path in fake.calls} == {"subjects"}
        assert all(not path.endswith("/versions") for _, path in fake.calls)


async def test_a_changed_compatible_schema_gets_a_new_version() -> None:
    fake = FakeSchemaRegistry()
    fake.add("streamd.deadletter-value", json.dumps({"type": "object"}))
    async with serving_registry(fake) as url:
        ids = await registry.register(kafka_config(url), ())
    assert len(fake.subjects["streamd.deadletter-value"]) == 2
    assert ids["streamd.deadletter"] == fake.subjects["streamd.deadletter-value"][-1]
    assert ("POST", "/compatibility/subjects/streamd.deadletter-value/versions/latest") in fake.calls


async def test_an_incompatible_schema_fails_the_start_naming_the_subject() -> None:
    fake = FakeSchemaRegistry(incompatible={"streamd.deadletter-value"})
    fake.add("streamd.deadletter-value", json.dumps({"type": "string"}))
    async with serving_registry(fake) as url:
        with pytest.raises(FatalError, match=r"streamd\.deadletter-value is not compatible"):
            await registry.register(kafka_config(url), ())
    assert ("POST", "/subjects/streamd.deadletter-value/versions") not in fake.calls


async def test_refused_credentials_fail_at_once() -> None:
    fake = FakeSchemaRegistry(user_info="key:secret")
    async with serving_registry(fake) as url:
        with pytest.raises(FatalError, match="credentials refused"):
            await registry.register(kafka_config(url, username="key", password="wrong"), ())
    assert len(fake.calls) == 1


async def test_a_registry_down_at_start_is_retried_then_fails_with_one_line() -> None:
    fake = FakeSchemaRegistry(unavailable=3)
    async with serving_registry(fake) as url:
        ids = await registry.register(kafka_config(url), ())  # 503 three times, then served
        assert set(ids) == {
            "streamd.agent-adherence",
            "streamd.agent-state",
            "streamd.queue-metrics",
            "streamd.deadletter",
            "streamd.source-status",
        }

        fake.unavailable = 10**6
        with pytest.raises(
            FatalError,
            match=r"unreachable: gave up after \d+\.\ds \(kafka\.schema_registry\.startup_timeout: 1s, \d+ attempts\)",
        ):
            await registry.register(kafka_config(url, startup_timeout="1s"), ())

    with anyio.fail_after(30):  # nothing listens: connection refused, same line
        with pytest.raises(FatalError, match="unreachable"):
            await registry.register(kafka_config(url, startup_timeout="1s"), ())


async def test_without_a_registry_the_encoder_is_the_plain_json_one() -> None:
    assert await registry.value_encoder(Config()) is encode
    fake = FakeSchemaRegistry()
    async with serving_registry(fake) as url:
        config = Config.model_validate({"kafka": {"schema_registry": {"url": url}}})
        assert await registry.value_encoder(config) is encode  # registered, values stay plain JSON
    assert fake.subjects


def test_confluent_framing_and_config_rules() -> None:
    event = agent_state("a1")
    plain = encode(event, "p.")
    framed = confluent_json({"p.agent-state": 258})(event, "p.")
    assert framed.value == b"\x00\x00\x00\x01\x02" + plain.value == confluent_frame(258) + plain.value
    assert (framed.topic, framed.key) == (plain.topic, plain.key)
    assert header_dict(framed.headers)["ce_type"] == "streamd.agent.State"
    with pytest.raises(ValueError, match=r"topic p\.agent-state has no schema registered"):
        confluent_json({})(event, "p.")
    with pytest.raises(ValueError, match="confluent-json needs schema_registry"):
        KafkaConfig.model_validate({"value_format": "confluent-json"})
    with pytest.raises(ValueError, match="username and password go together"):
        KafkaConfig.model_validate({"schema_registry": {"url": "http://r:8081", "username": "u"}})
    with pytest.raises(ValueError, match="url"):
        KafkaConfig.model_validate({"schema_registry": {"url": "r:8081"}})


# -- records on Kafka, read back by confluent-kafka --------------------------------------------


@pytest.mark.kafka
async def test_confluent_json_records_are_read_back_by_confluents_deserializer(tmp_path: Path) -> None:
    fake = FakeSchemaRegistry()
    async with serving_registry(fake) as url, EmbeddedBroker() as bootstrap:
        config = Config.model_validate(
            {"kafka": {"value_format": "confluent-json", "schema_registry": {"url": url}}}
        )
        encoder = await registry.value_encoder(config)
        async with kafka_publisher(bootstrap, linger="1ms") as publisher:
            pipeline = Pipeline(publisher, Spool(tmp_path / "spool.db"), "streamd.", encode=encoder)
            emit = pipeline.emitter("cloud1")
            async with anyio.create_task_group() as tg:
                tg.start_soon(pipeline.run)
                letter = DeadLetter.of(
                    source="cloud1", stage="processing", error_type="not_json", error="bad", raw=b"{"
                )
                await emit([agent_state("a1"), agent_state("a2", "busy"), letter.to_event()])
                await emit.aclose()

        states = await read_topic(bootstrap, "streamd.agent-state", lambda rs: len(rs) >= 2)
        letters = await read_topic(bootstrap, "streamd.deadletter", lambda rs: len(rs) >= 1)

        client = SchemaRegistryClient({"url": url})
        deserializer = JSONDeserializer(None, schema_registry_client=client)  # validates by default

        def read(topic: str, value: bytes) -> Any:
            return deserializer(value, SerializationContext(topic, MessageField.VALUE))

        try:
            await _read_back(fake, read, states, letters)
        finally:
            client.close()


async def _read_back(fake: FakeSchemaRegistry, read: Any, states: list[Any], letters: list[Any]) -> None:
    values = [await anyio.to_thread.run_sync(read, "streamd.agent-state", r.value) for r in states]
    assert sorted((v["agent_id"], v["state"]) for v in values) == [("a1", "available"), ("a2", "busy")]
    dead = await anyio.to_thread.run_sync(read, "streamd.deadletter", letters[0].value)
    assert dead["error_type"] == "not_json"

    # The wire format by hand: byte 0, the id registered for the topic's subject, the JSON.
    magic, schema_id = struct.unpack(">bI", states[0].value[:5])
    assert (magic, schema_id) == (0, fake.subjects["streamd.agent-state-value"][-1])
    jsonschema.Draft202012Validator(fake.schema_of("streamd.agent-state-value")).validate(
        orjson.loads(states[0].value[5:])
    )

    # A value that breaks the registered schema is refused by the deserializer: it validates.
    bad = states[0].value[:5] + orjson.dumps({"agent_id": 1})
    with pytest.raises(SerializationError, match=r"is not valid under any of the given schemas"):
        await anyio.to_thread.run_sync(read, "streamd.agent-state", bad)
