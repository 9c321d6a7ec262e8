"""A member's webhook advertisements (docs/architecture.md "Webhooks on any replica"; the wire
format and the forwarding are :mod:`.webhooks`').

Rules:

1. The credentials of the webhook sources this replica runs are advertised through the state topic
   whenever they change, on every new generation and every ``READVERTISE_INTERVAL`` (the newest
   owner's advertisement wins over one a replica cut off from Kafka sends late).
2. The ``webhooks`` job (:meth:`Advertiser.follow`) follows everyone's advertisements, and the
   registry forwards a POST for a source that runs elsewhere.
3. This replica's URL is worked out once per session, in a worker thread (it may ask DNS).
4. Advertising needs both the HTTP port's webhook registry and the cursor store (the state topic).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable

import anyio

from streamd.cluster.state import KafkaCursorStore, follow
from streamd.cluster.webhooks import ADVERT_NAME, Advert, WebhookForwarder
from streamd.config_core import KafkaConfig
from streamd.http.app import Webhooks
from streamd.runtime import Connected

READVERTISE_INTERVAL = 60.0
"""Seconds after which an owner sends its unchanged webhook advertisement again (rule 1)."""


class Advertiser:
    """What this replica advertises of its webhook sources, and what it learns of the others'.

    Args:
        kafka: the Kafka section, with resolved bootstrap servers.
        sources: the units that are sources (the forwarder's cluster).
        webhooks: the HTTP port's webhook registry (None: nothing advertised or forwarded).
        store: the cursor store, whose state topic carries the advertisements (None: likewise).
        advertised_url: this replica's HTTP base URL as the others reach it.
    """

    def __init__(
        self,
        kafka: KafkaConfig,
        sources: Iterable[str],
        webhooks: Webhooks | None,
        store: KafkaCursorStore | None,
        advertised_url: Callable[[], str] | None,
    ) -> None:
        self.kafka, self.webhooks, self.store, self.advertised_url = kafka, webhooks, store, advertised_url
        self.forwarder = WebhookForwarder(sources)
        self._advertised: dict[str, tuple[str, float]] = {}  # source -> (value, when queued)
        self._url: str | None = None  # advertised_url() of this session (rule 3)
        if self.enabled:
            assert webhooks is not None
            webhooks.forwarder = self.forwarder

    @property
    def enabled(self) -> bool:
        """Whether this replica advertises and follows advertisements (rule 4)."""
        return self.webhooks is not None and self.store is not None

    async def resolve_url(self) -> str | None:
        """Work out ``advertised_url()`` for this session, in a worker thread (it may ask DNS), and
        keep it (rule 3); None without one."""
        if self.advertised_url is None:
            return None
        if self._url is None:
            self._url = await anyio.to_thread.run_sync(self.advertised_url)
        return self._url

    def new_generation(self) -> None:
        """Every generation hears every owner anew (rule 1)."""
        self._advertised.clear()

    def forget(self, source: str) -> None:
        """``source`` stopped here: advertised anew whenever it runs here again."""
        self._advertised.pop(source, None)

    async def end_session(self) -> None:
        """The member's session ended: nothing advertised, the URL worked out again next time."""
        self._advertised.clear()
        self._url = None
        await self.forwarder.aclose()

    def advertise(self, now: float, running: Collection[str]) -> None:
        """Queue for the state topic the advertisement of every webhook source in ``running`` that
        changed, or was last queued in an earlier generation or ``READVERTISE_INTERVAL`` before
        ``now`` (rule 1)."""
        url = self._url
        if self.webhooks is None or self.store is None or url is None:
            return
        for (_, source), (credentials, max_body) in self.webhooks.advertised().items():
            if source not in running:
                continue
            value = Advert.of(url, credentials, max_body).encode()
            previous = self._advertised.get(source)
            if previous is None or previous[0] != value or now - previous[1] >= READVERTISE_INTERVAL:
                self._advertised[source] = (value, now)
                self.store.queue(source, ADVERT_NAME, value)
                self.forwarder.learn(source, value)

    async def follow(self, connected: Connected) -> None:
        """The ``webhooks`` job: follow the other replicas' advertisements (rule 2)."""
        assert self.store is not None

        def on_value(source: str, name: str, value: str | None) -> None:
            if name == ADVERT_NAME:
                self.forwarder.learn(source, value)

        await follow(self.kafka, self.store.topic, on_value, connected)
