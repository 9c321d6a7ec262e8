"""Webhooks on any replica (streamd/cluster/webhooks.py): a POST reaching a replica that does not
run its source is checked against the digests the owner advertised and forwarded to the owner,
whose answer comes back; the owner is a real HTTP server with an O2G webhook receiver."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import httpx
import pytest

from streamd.cluster.webhooks import FORWARDED_HEADER, Advert, WebhookForwarder, advertised_base, digest
from streamd.embedded import free_port
from streamd.http.app import Webhooks, build_app
from streamd.http.server import serve
from streamd.publish.memory import MemoryEmit
from streamd.sources.o2g.webhook import WebhookReceiver
from streamd.telemetry import Health

pytestmark = pytest.mark.anyio

EVENT = b'{"eventName":"OnAgentStateChanged","loginName":"1001","state":{"mainState":"READY"}}'


def test_an_advert_holds_digests_never_the_credentials() -> None:
    advert = Advert.of("http://10.0.0.5:8080", ["sub-1", "token-xyz", ""])
    encoded = advert.encode()
    assert "sub-1" not in encoded
    assert "token-xyz" not in encoded
    assert digest("sub-1") in encoded
    assert Advert.decode(encoded) == advert
    assert Advert.decode(Advert.of("http://h:1", ["a"], 1000).encode()).max_body == 1000  # type: ignore[union-attr]
    assert advert.accepts("sub-1")
    assert advert.accepts("AlcUserId%3Dtoken-xyz")
    assert not advert.accepts("sub-2")
    assert not advert.accepts("")
    assert Advert.decode("{not json") is None
    assert Advert.decode('{"url": 1, "digests": []}') is None


def test_the_advertised_base_url() -> None:
    assert advertised_base("127.0.0.1", 8080) == "http://127.0.0.1:8080"
    assert advertised_base("::1", 80) == "http://[::1]:80"
    assert advertised_base("0.0.0.0", 80).startswith("http://")


@asynccontextmanager
async def owner(emit: MemoryEmit) -> AsyncIterator[tuple[str, WebhookReceiver]]:
    """An owner replica's HTTP port running the O2G source ``pbx`` (its receiver)."""
    receiver = WebhookReceiver(source="pbx", emit=emit, deadline=5, max_event_size=4096)
    receiver.subscription_ids = {"sub-1"}
    webhooks = Webhooks()
    webhooks.register("o2g", "pbx", receiver.handle)
    assert webhooks.advertised() == {("o2g", "pbx"): (frozenset({"sub-1"}), 4096 * 4)}
    async with anyio.create_task_group() as tg:
        port = await tg.start(serve, build_app(Health(), webhooks), "127.0.0.1", free_port())
        yield f"http://127.0.0.1:{port}", receiver
        tg.cancel_scope.cancel()


def replica(forwarder: WebhookForwarder) -> httpx.AsyncClient:
    """A replica that runs nothing: its registry forwards."""
    webhooks = Webhooks()
    webhooks.forwarder = forwarder
    app = build_app(Health(), webhooks)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://replica")


async def test_a_post_for_a_source_of_another_replica_is_forwarded_and_durable_there() -> None:
    emit = MemoryEmit()
    async with owner(emit) as (url, receiver):
        forwarder = WebhookForwarder(["pbx", "other"])
        async with replica(forwarder) as http:
            early = await http.post("/webhooks/o2g/pbx", content=EVENT, headers={"Cookie": "sub-1"})
            assert early.status_code == 503  # nothing advertised yet: O2G retries, never drops
            assert early.headers["Retry-After"]

            forwarder.learn("pbx", Advert.of(url, receiver.credentials(), receiver.max_body).encode())
            big = await http.post(
                "/webhooks/o2g/pbx", content=b" " * (receiver.max_body + 1), headers={"Cookie": "sub-1"}
            )
            assert big.status_code == 413  # the owner's cap, applied before anything is forwarded
            ok = await http.post("/webhooks/o2g/pbx", content=EVENT, headers={"Cookie": "sub-1"})
            assert ok.status_code == 200, ok.text
            assert emit.events  # durable at the owner before the 200
            durable = len(emit.events)

            forged = await http.post("/webhooks/o2g/pbx", content=EVENT, headers={"Cookie": "sub-9"})
            assert forged.status_code == 503  # not forwarded: unknown to the owner's advert
            assert len(emit.events) == durable

            bad = await http.post("/webhooks/o2g/pbx", content=b"{not json", headers={"Cookie": "sub-1"})
            assert bad.status_code == 400  # the owner's answer, as it is

            durable = len(emit.events)  # the unreadable body went to the dead letters
            get = await http.get("/webhooks/o2g/pbx", headers={"Cookie": "sub-1"})
            assert get.status_code == 405  # forwarded as a GET: the owner's O2G handler takes POST only
            assert len(emit.events) == durable

            loop = await http.post(
                "/webhooks/o2g/other", content=EVENT, headers={"Cookie": "x", FORWARDED_HEADER: "1"}
            )
            assert loop.status_code == 503  # a forwarded POST is never forwarded again

            unknown = await http.post("/webhooks/o2g/nope", content=EVENT, headers={"Cookie": "sub-1"})
            assert unknown.status_code == 404  # not a source of the cluster

    # the owner is gone (its advert is stale): 503, O2G retries
    async with replica(forwarder) as http:
        gone = await http.post("/webhooks/o2g/pbx", content=EVENT, headers={"Cookie": "sub-1"})
        assert gone.status_code == 503
    await forwarder.aclose()
    forwarder.learn("pbx", None)  # a tombstone forgets the advert
    assert "pbx" not in forwarder.adverts
