"""Telling a whole-Kafka outage apart from a partition (streamd/cluster/outage.py): only a refused
connection from every broker is a proof; a listening broker or a bootstrap name that does not
resolve are not (a partition that accepts and then times out: tests/cluster/test_outage_member.py)."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import anyio
import pytest

from streamd.cluster.outage import kafka_refused, name_gone, parse_bootstrap
from streamd.embedded import free_port

pytestmark = pytest.mark.anyio


@pytest.fixture
def listening() -> Iterator[int]:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        s.listen(8)
        yield int(s.getsockname()[1])


def test_bootstrap_servers_are_parsed_with_their_ports() -> None:
    assert parse_bootstrap("a:1, b:2,[::1]:3,c") == [("a", 1), ("b", 2), ("::1", 3), ("c", 9092)]
    assert parse_bootstrap("") == []


async def test_every_broker_refusing_is_a_proof() -> None:
    closed = free_port()  # nothing listens there
    with anyio.fail_after(10):
        assert await kafka_refused([("127.0.0.1", closed)])
        assert await kafka_refused([("127.0.0.1", closed)], [("broker-0.invalid", 9092)])  # gone pod


async def test_one_broker_that_listens_is_no_proof(listening: int) -> None:
    closed = free_port()
    with anyio.fail_after(10):
        assert not await kafka_refused([("127.0.0.1", listening)])
        assert not await kafka_refused([("127.0.0.1", closed), ("127.0.0.1", listening)])
        assert not await kafka_refused([("127.0.0.1", closed)], [("127.0.0.1", listening)])


async def test_an_unresolvable_bootstrap_server_is_no_proof() -> None:
    with anyio.fail_after(10):
        assert not await kafka_refused([])
        assert not await kafka_refused([("kafka.invalid", 9092)])  # a partition from DNS looks like this


def test_only_a_name_that_does_not_exist_is_a_gone_broker() -> None:
    assert name_gone(socket.gaierror(socket.EAI_NONAME, "Name or service not known"))
    # DNS not answering (a partition can cut a replica off its DNS too) proves nothing
    assert not name_gone(socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution"))
    assert not name_gone(socket.gaierror(socket.EAI_FAIL, "Non-recoverable failure in name resolution"))


async def test_a_metadata_broker_dns_cannot_resolve_now_is_no_proof(monkeypatch: pytest.MonkeyPatch) -> None:
    closed = free_port()
    real = anyio.getaddrinfo

    async def dns_unreachable_for_brokers(host: str, *args: object, **kwargs: object) -> object:
        if host.endswith(".cluster.local"):
            raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")
        return await real(host, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(anyio, "getaddrinfo", dns_unreachable_for_brokers)
    with anyio.fail_after(10):
        assert not await kafka_refused([("127.0.0.1", closed)], [("kafka-0.kafka.svc.cluster.local", 9092)])
