"""``KafkaPublisher.expedite`` on an aiokafka with and without the internals it uses."""

from __future__ import annotations

import logging
from typing import Any

import aiokafka
import pytest
from aiokafka import AIOKafkaProducer

from streamd.config_core import KafkaConfig
from streamd.publish.kafka import KafkaPublisher

pytestmark = pytest.mark.anyio


def _publisher(producer: Any) -> KafkaPublisher:
    pub = KafkaPublisher(KafkaConfig(bootstrap_servers="k:9092"), "k:9092", embedded=False)
    pub._producer = producer
    return pub


async def test_missing_internals_warn_once_naming_the_aiokafka_version(
    caplog: pytest.LogCaptureFixture,
) -> None:
    pub = _publisher(object())  # a producer without ``_message_accumulator``
    with caplog.at_level(logging.WARNING, logger="streamd.kafka"):
        pub.expedite()
        pub.expedite()
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    text = warnings[0].getMessage()
    assert f"aiokafka {aiokafka.__version__}" in text
    assert "linger flush is unavailable" in text


async def test_installed_aiokafka_has_the_internals(caplog: pytest.LogCaptureFixture) -> None:
    producer = AIOKafkaProducer(bootstrap_servers="127.0.0.1:9")  # never started: no connection
    pub = _publisher(producer)
    waiter = producer._message_accumulator._waiter_future
    try:
        with caplog.at_level(logging.WARNING, logger="streamd.kafka"):
            pub.expedite()
    finally:
        await producer.stop()
    assert waiter.done()  # the sender was woken
    assert not caplog.records
