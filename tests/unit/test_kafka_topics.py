"""Topic creation answers: per-topic errors of a CreateTopics response (aiokafka does not raise them)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from streamd.config_core import KafkaConfig
from streamd.publish.kafka import KafkaPublisher, producer_kwargs


def test_per_topic_errors_retry_or_give_up_for_that_topic_only(caplog: pytest.LogCaptureFixture) -> None:
    pub = KafkaPublisher(KafkaConfig(bootstrap_servers="k:9092"), "k:9092", embedded=False)
    pub.topics.known.update({"p.ok", "p.exists", "p.later", "p.denied"})
    response = SimpleNamespace(
        topic_errors=[
            ("p.ok", 0, None),
            ("p.exists", 36, "Topic already exists"),
            ("p.later", 41, None),  # NOT_CONTROLLER: retriable
            ("p.denied", 29, "not authorised"),  # TOPIC_AUTHORIZATION_FAILED
        ]
    )
    pub.topics.check_created(response)
    assert pub.topics.known == {"p.ok", "p.exists", "p.denied"}  # p.later is asked again
    assert not pub.topics.refused  # other topics may still be created
    assert "topic p.denied not created (not authorised)" in caplog.text


def test_sasl_ssl_settings_reach_every_client(tmp_path: object) -> None:
    cfg = KafkaConfig.model_validate(
        {
            "bootstrap_servers": "k:9093",
            "security": {
                "protocol": "SASL_SSL",
                "sasl_mechanism": "SCRAM-SHA-512",
                "username": "u",
                "password": "pw",
            },
        }
    )
    kwargs = producer_kwargs(cfg, "k:9093", embedded=False)
    assert kwargs["security_protocol"] == "SASL_SSL"
    assert kwargs["sasl_mechanism"] == "SCRAM-SHA-512"
    assert kwargs["sasl_plain_username"] == "u"
    assert kwargs["sasl_plain_password"] == "pw"
    assert kwargs["ssl_context"].check_hostname is True
    assert kwargs["acks"] == "all"
    assert kwargs["compression_type"] == "zstd"
    assert kwargs["enable_idempotence"] is True
