"""The cluster's two topics: the control topic (one partition per unit, grown when units are
added) and the compacted state topic (docs/architecture.md "Several replicas")."""

from __future__ import annotations

import contextlib
import logging
from typing import Any

import anyio
from aiokafka.admin import AIOKafkaAdminClient, NewPartitions, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from streamd.cluster.assign import state_topic
from streamd.config_core import KafkaConfig
from streamd.publish.consume import kafka_errors
from streamd.publish.kafka import client_kwargs

log = logging.getLogger("streamd.cluster")


async def ensure_topics(kafka: KafkaConfig, control: str, units: int) -> None:
    """The control topic ``control`` with a partition per unit (``units``; grown if it has fewer)
    and the state topic.

    Raises:
        TransientError: Kafka could not be asked.
    """
    admin = AIOKafkaAdminClient(**client_kwargs(kafka, kafka.bootstrap_servers))
    try:
        with kafka_errors():
            await admin.start()
            replication = kafka.topics.replication_factor or min(
                3, max(1, len(admin._client.cluster.brokers()))
            )
            wanted_partitions = max(1, units)
            await _create(admin, NewTopic(control, wanted_partitions, replication))
            await _create(
                admin,
                NewTopic(
                    state_topic(kafka.topic_prefix),
                    1,
                    replication,
                    topic_configs={"cleanup.policy": "compact"},
                ),
            )
            described: list[dict[str, Any]] = await admin.describe_topics([control])
            have = len(described[0].get("partitions", [])) if described else 0
            if 0 < have < wanted_partitions:
                log.info("cluster: growing %s from %d to %d partitions", control, have, wanted_partitions)
                await admin.create_partitions({control: NewPartitions(wanted_partitions)})
    finally:
        with anyio.CancelScope(shield=True), anyio.move_on_after(2):
            await admin.close()


async def _create(admin: AIOKafkaAdminClient, topic: NewTopic) -> None:
    with contextlib.suppress(TopicAlreadyExistsError):
        await admin.create_topics([topic])
