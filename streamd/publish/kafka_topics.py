"""Topic creation for the producer: topics are created on first use through the admin client.

Rules:

1. Topics are created on first use with the configured partitions/replication (replication: at
   most 3, at most the brokers known); the canonical latest-state topics get
   ``cleanup.policy=compact``.
2. A broker that refuses topic creation for good (e.g. not authorised) is left to auto-create,
   with one logged notice, and is not asked again. Kafka unreachable or a retriable refusal
   raises :class:`PublishError` and the topics are asked again with the next batch.
3. A CreateTopics answer carries per-topic errors (aiokafka does not raise them): a retriable
   one asks that topic again later; any other leaves that topic to auto-creation, the others are
   still created.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import (
    KafkaConnectionError,
    KafkaError,
    KafkaTimeoutError,
    NodeNotReadyError,
    TopicAlreadyExistsError,
    for_code,
)

from streamd.config_core import KafkaConfig
from streamd.errors import PublishError
from streamd.events import AGENT_ADHERENCE_TOPIC, AGENT_STATE_TOPIC, DEADLETTER_TOPIC, QUEUE_METRICS_TOPIC
from streamd.publish.kafka_client import client_kwargs
from streamd.sources.calabrio.models import REFERENCE_TOPIC

log = logging.getLogger("streamd.kafka")

COMPACTED = (AGENT_STATE_TOPIC, QUEUE_METRICS_TOPIC, AGENT_ADHERENCE_TOPIC, REFERENCE_TOPIC)
"""Topics created compacted: each key's latest record is the state (canonical states, reference data)."""


class TopicCreator:
    """Creates the topics a producer writes to, once each (rules 1-3).

    Args:
        broker_count: how many brokers the producer knows (1 when it is not running).
    """

    def __init__(self, cfg: KafkaConfig, bootstrap: str, broker_count: Callable[[], int]) -> None:
        self.cfg = cfg
        self.bootstrap = bootstrap
        self.known: set[str] = set()
        self.refused = False
        self._broker_count = broker_count

    async def ensure(self, topics: Iterable[str]) -> None:
        """Create topics not seen before (compacted for the latest-state topics).

        Raises:
            PublishError: Kafka could not be asked, or asked to try again later.
        """
        new = [t for t in topics if t not in self.known]
        if not new:
            return
        self.known.update(new)
        if not self.cfg.topics.create or self.refused:
            return
        prefix = self.cfg.topic_prefix
        admin = AIOKafkaAdminClient(**client_kwargs(self.cfg, self.bootstrap))
        try:
            await admin.start()
            replication = self.cfg.topics.replication_factor or min(3, self._broker_count())
            specs = [
                NewTopic(
                    name=t,
                    num_partitions=self.cfg.topics.partitions,
                    replication_factor=replication,
                    topic_configs={"cleanup.policy": "compact"}
                    if t.removeprefix(prefix) in COMPACTED
                    else {},
                )
                for t in new
            ]
            response = await admin.create_topics(specs)
        except TopicAlreadyExistsError:
            return
        except (KafkaConnectionError, KafkaTimeoutError, NodeNotReadyError, OSError) as exc:
            self.known.difference_update(new)  # try again once Kafka is back
            raise PublishError(f"cannot create topics: {type(exc).__name__}: {exc}") from exc
        except KafkaError as exc:
            if exc.retriable:  # e.g. the controller moved: ask again with the next batch
                self.known.difference_update(new)
                raise PublishError(f"cannot create topics yet: {type(exc).__name__}: {exc}") from exc
            self.refused = True  # e.g. not authorised to create topics at all
            log.warning("topic creation refused (%s); relying on the broker's auto-creation", exc)
            return
        finally:
            await admin.close()
        self.check_created(response)

    def check_created(self, response: Any) -> None:
        """Per-topic error codes of a CreateTopics response (aiokafka does not raise them)."""
        for error in getattr(response, "topic_errors", ()):
            name, code = error[0], error[1]
            if code in (0, TopicAlreadyExistsError.errno):
                continue
            cls = for_code(code)
            message = error[2] if len(error) > 2 and error[2] else cls.__name__
            if cls.retriable:
                self.known.discard(name)  # asked again with the next batch for it
                log.info("topic %s not created yet (%s); will retry", name, message)
            else:  # this topic only: the others may still be created
                log.warning("topic %s not created (%s); relying on the broker's auto-creation", name, message)

    def default_topics(self) -> list[str]:
        """Topics every deployment has."""
        return [self.cfg.topic_prefix + t for t in (*COMPACTED, DEADLETTER_TOPIC)]
