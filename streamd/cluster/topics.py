"""The cluster's two topics: the control topic (one partition per unit, grown when units are
added) and the compacted state topic (docs/architecture.md "Several replicas")."""

from __future__ import annotations

import contextlib
import logging
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewPartitions, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from streamd.cluster.assign import state_topic
from streamd.config_core import KafkaConfig
from streamd.publish.consume import admin_client, kafka_errors

log = logging.getLogger("streamd.cluster")


async def ensure_topics(kafka: KafkaConfig, control: str, units: int) -> None:
    """The control topic ``control`` with a partition per unit (``units``; grown if it has fewer)
    and the state topic.

    Raises:
        TransientError: Kafka could not be asked.
    """
    async with admin_client(kafka) as admin:
        with kafka_errors():
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


async def _create(admin: AIOKafkaAdminClient, topic: NewTopic) -> None:
    with contextlib.suppress(TopicAlreadyExistsError):
        await admin.create_topics([topic])
