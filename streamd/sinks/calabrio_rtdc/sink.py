"""The ``calabrio-rtdc`` sink's Kafka side: read ``{prefix}agent-state``, deliver, commit.

Rules: see :mod:`streamd.sinks.calabrio_rtdc` (rules 1, 4-8).
"""

from __future__ import annotations

import ssl
from collections.abc import Callable
from functools import partial

import anyio
import httpx
from anyio.abc import TaskStatus

from streamd.config_core import KafkaConfig
from streamd.errors import TransientError
from streamd.events import AGENT_STATE_TOPIC
from streamd.publish.consume import TopicReader
from streamd.runtime import Job, Jobs
from streamd.sinks.calabrio_rtdc.config import CalabrioRtdcSinkConfig
from streamd.sinks.calabrio_rtdc.delivery import Rejections, RtdcDelivery
from streamd.sinks.calabrio_rtdc.directory import AgentDirectory
from streamd.sinks.calabrio_rtdc.mapping import select_states
from streamd.sources.base import Emit
from streamd.sources.calabrio.auth import auth_for, logout
from streamd.sources.http import tls_verify
from streamd.telemetry import count_error


class CalabrioRtdcSink:
    """Reads ``{prefix}agent-state`` and feeds :class:`RtdcDelivery` (rule 1's outer layer).

    Args:
        cfg: the sink config.
        kafka: the Kafka section, with the resolved bootstrap servers.
        jobs: this sink's handle on the supervisor; default: a standalone one (tests).
    """

    def __init__(self, cfg: CalabrioRtdcSinkConfig, kafka: KafkaConfig, *, jobs: Jobs | None = None) -> None:
        self.name = cfg.name
        self.cfg = cfg
        self.kafka = kafka
        self.topic = kafka.topic_prefix + AGENT_STATE_TOPIC
        self.group_id = cfg.group_id or f"streamd-{cfg.name}"
        self.jobs = jobs or Jobs.standalone(cfg.name, "sink")
        self.component = self.jobs.component
        self.auth = auth_for(cfg)
        self.rejections = Rejections()
        """The rejection streak, kept across sessions (rule 7)."""
        self.directory = AgentDirectory(cfg)
        """The Calabrio agents' acdId, kept across sessions (rule 9)."""
        self._verify: ssl.SSLContext | bool | None = None

    def verify(self) -> ssl.SSLContext | bool:
        """httpx's ``verify=`` for Calabrio, made once (rule 8; warns once when verification is off).

        Raises:
            FatalError: the ``ca_file`` cannot be used (the sink's job fails).
        """
        if self._verify is None:
            self._verify = tls_verify(self.cfg, f"calabrio-rtdc sink {self.name}")
        return self._verify

    def client(self) -> httpx.AsyncClient:
        """A client for the tenant with the Calabrio session (one per session)."""
        return httpx.AsyncClient(
            base_url=self.cfg.url, auth=self.auth, timeout=self.cfg.timeout, verify=self.verify()
        )

    async def session(self, emit: Emit, connected: Callable[[], None]) -> None:
        """Forward agent states until something fails; ``connected()`` once the topic is assigned.

        Dead letters (undecodable values, rejected records) go to ``emit``, awaited until durable,
        before the offsets that carried them are committed. The Calabrio session (``self.auth``)
        outlives it: :meth:`run` logs out when the sink stops.

        Raises:
            TransientError: Kafka failed, the topic does not exist yet, or Calabrio answered 5xx.
            BackOff: Calabrio answered 429.
            AuthError: Calabrio refused the credentials.
            CertificateError: Calabrio's TLS certificate does not verify (rule 8).
            SystematicRejection: Calabrio rejects every record (rule 7).
        """
        client = self.client()
        async with client, TopicReader(self.kafka, [self.topic], group_id=self.group_id) as reader:
            await reader.assign()
            if reader.missing:
                raise TransientError(f"{self.name}: topic {self.topic} does not exist yet")
            connected()
            delivery = RtdcDelivery(self.cfg, client, emit, self.rejections, self.directory)
            while True:
                records = await reader.read(wait=self.cfg.flush_interval, max_records=self.cfg.batch_size)
                if not records:
                    continue
                states, dead = select_states(records, self.cfg.from_, self.name)
                if dead:
                    for event in dead:
                        count_error(self.name, "sink", event.data.error_type)
                    await emit(dead)
                await delivery.deliver(states)
                await reader.commit()

    async def run(self, emit: Emit, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Run :meth:`session` under the supervisor until cancelled, then log out of Calabrio."""
        try:
            await self.jobs.run(Job("forward", partial(self.session, emit)), task_status=task_status)
        finally:
            with anyio.move_on_after(2, shield=True):
                await logout(self.auth, verify=True if self._verify is None else self._verify)
