"""A cluster member's own bookkeeping, without a broker (streamd/cluster/member.py, fencing.py, advertise.py):
the state a unit leaves queued when it is given up, the owner's advertisements per generation and
per interval, this replica's URL worked out once off the event loop, no outage proof without the
consumer's metadata, and a commit counting from when it was sent. The member's units run in a real
:class:`Switchboard`; Kafka is a closed port (the store's producer never connects), so what is
queued for the state topic stays visible."""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import anyio
import pytest
from aiokafka import TopicPartition

from streamd.cluster.member import READVERTISE_INTERVAL, ClusterMember
from streamd.cluster.state import KafkaCursorStore
from streamd.cluster.webhooks import ADVERT_NAME, Advert
from streamd.config_core import ClusterConfig, KafkaConfig
from streamd.embedded import free_port
from streamd.http.app import Webhooks
from streamd.publish.memory import MemoryEmit
from streamd.publish.spool import Spool
from streamd.runtime import Switchboard
from streamd.sources.o2g.webhook import WebhookReceiver
from streamd.telemetry import Component

pytestmark = pytest.mark.anyio

URL = "http://10.0.0.5:8080"


async def run_forever(name: str) -> None:
    await anyio.sleep_forever()


def member_with_store(tmp_path: Path, calls: list[int]) -> tuple[ClusterMember, KafkaCursorStore]:
    """A member owning the O2G webhook source ``pbx`` (subscription ``sub-1``)."""
    kafka = KafkaConfig(bootstrap_servers=f"127.0.0.1:{free_port()}", topic_prefix="t.")
    store = KafkaCursorStore(Spool(tmp_path / "spool.db"), kafka, "t._streamd.state")
    receiver = WebhookReceiver(source="pbx", emit=MemoryEmit(), deadline=5, max_event_size=4096)
    receiver.subscription_ids = {"sub-1"}
    webhooks = Webhooks()
    webhooks.register("o2g", "pbx", receiver.handle)

    def url() -> str:
        calls.append(threading.get_ident())
        return URL

    member = ClusterMember(
        ClusterConfig(enabled=True, group_id="g", session_timeout=10),
        kafka,
        ["pbx"],
        run_forever,
        Component("cluster", "cluster"),
        store=store,
        sources=["pbx"],
        webhooks=webhooks,
        advertised_url=url,
    )
    return member, store


async def test_a_unit_given_up_drops_what_it_left_queued_and_owners_advertise_again(tmp_path: Path) -> None:
    calls: list[int] = []
    member, store = member_with_store(tmp_path, calls)
    async with anyio.create_task_group() as tg:
        member._switch = Switchboard(tg)
        assert await member.adverts.resolve_url() == URL
        await member.assigned_partitions([0], 1, "m-1")
        assert member.running == {"pbx"}
        now = anyio.current_time()
        member.adverts.advertise(now, member.running)
        assert store.pending("pbx") == 1
        assert Advert.decode(store._pending[("pbx", ADVERT_NAME)]) == Advert.of(URL, ["sub-1"], 4096 * 4)
        store.save("pbx", "cursor", "2026-12-05T01:00:00Z")
        assert store.pending("pbx") == 2

        # fenced (Kafka unreachable): the unit stops, the flush fails, and nothing of it stays
        # queued to overwrite the next owner's advertisement or cursor once Kafka is back
        member.fence.last_ok = now - 3600
        await member._reconcile()
        assert member.running == frozenset()
        assert store.pending("pbx") == 0
        assert store.load("pbx", "cursor") == "2026-12-05T01:00:00Z"  # the local cache keeps it

        # a new generation while the unit keeps running: advertised again, unchanged as it is
        await member.assigned_partitions([0], 2, "m-1")
        assert member.running == {"pbx"}
        member.adverts.advertise(now, member.running)
        assert store.pending("pbx") == 1
        store.drop("pbx")  # as if sent
        member.adverts.advertise(now, member.running)
        assert store.pending("pbx") == 0  # unchanged, same generation
        member.adverts.advertise(now + READVERTISE_INTERVAL, member.running)
        assert store.pending("pbx") == 1  # and again every READVERTISE_INTERVAL

        # a revocation drops what is queued too
        await member.revoked()
        assert member.running == frozenset()
        assert store.pending("pbx") == 0
        tg.cancel_scope.cancel()
    assert len(calls) == 1  # once for the session, not on every advertisement
    assert threading.get_ident() not in calls  # worked out in a worker thread


def test_drop_forgets_only_that_source(tmp_path: Path) -> None:
    kafka = KafkaConfig(bootstrap_servers="127.0.0.1:9", topic_prefix="t.")
    store = KafkaCursorStore(Spool(tmp_path / "spool.db"), kafka, "t._streamd.state")
    store.save("a", "cursor", "1")
    store.queue("a", ADVERT_NAME, "{}")
    store.save("b", "cursor", "2")
    assert store.drop("a") == 2
    assert (store.pending("a"), store.pending("b")) == (0, 1)
    assert store.drop("a") == 0


def probing_member() -> tuple[ClusterMember, int]:
    closed = free_port()  # nothing listens: the bootstrap server refuses
    member = ClusterMember(
        ClusterConfig(enabled=True, group_id="g", session_timeout=10, ride_through_outage=True),
        KafkaConfig(bootstrap_servers=f"127.0.0.1:{closed}", topic_prefix="t."),
        ["a"],
        run_forever,
        Component("cluster", "cluster"),
    )
    member.assigned = frozenset({"a"})
    member.fence.ok(anyio.current_time())
    return member, closed


async def test_no_outage_proof_without_the_brokers_of_the_metadata(caplog: pytest.LogCaptureFixture) -> None:
    member, _ = probing_member()
    with caplog.at_level(logging.WARNING, "streamd.cluster"), anyio.fail_after(10):
        await member.fencing.probe_outage(object())  # type: ignore[arg-type]  # no metadata to read
        await member.fencing.probe_outage(SimpleNamespace(_client=SimpleNamespace(cluster=None)))  # type: ignore[arg-type]
    assert member.fencing.outage_proofs == 0
    assert member.fence.last_down == float("-inf")
    said = [r for r in caplog.records if "metadata cannot be read" in r.getMessage()]
    assert len(said) == 1  # said once


async def test_an_outage_proof_from_the_brokers_of_the_metadata() -> None:
    member, closed = probing_member()
    broker = SimpleNamespace(host="127.0.0.1", port=closed)
    consumer: Any = SimpleNamespace(
        _client=SimpleNamespace(cluster=SimpleNamespace(brokers=lambda: [broker]))
    )
    with anyio.fail_after(10):
        await member.fencing.probe_outage(consumer)
    assert (member.fencing.probes, member.fencing.outage_proofs) == (1, 1)


class HeldCommit:
    """A consumer whose commit is answered only when the test says so."""

    def __init__(self) -> None:
        self.answer = anyio.Event()
        self.sent_at = float("nan")

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        self.sent_at = anyio.current_time()
        await self.answer.wait()


async def test_a_commit_counts_from_when_it_was_sent() -> None:
    member, _ = probing_member()
    member.fence.last_ok = 0.0
    consumer = HeldCommit()
    done = anyio.Event()
    async with anyio.create_task_group() as tg:
        tg.start_soon(member.fencing.commit, consumer, frozenset({TopicPartition("c", 0)}), done)
        await anyio.sleep(0.05)  # the answer comes later than the request
        consumer.answer.set()
        with anyio.fail_after(10):
            await done.wait()
    assert member.fencing.commit_failure is None
    assert 0.0 < member.fence.last_ok <= consumer.sent_at
