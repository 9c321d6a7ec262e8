"""The Xima call-finished receiver (/webhooks/xima/{source}) in front of a memory emitter: secret,
methods, body cap, dead letters, and 2xx only once the event is durable."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import anyio
import httpx
import pytest

from streamd.errors import PublishError
from streamd.events import Event
from streamd.http.app import Webhooks, build_app
from streamd.publish.memory import MemoryEmit
from streamd.sim.server import serving
from streamd.sim.xima import XimaSimulator
from streamd.sources.o2g.webhook import WebhookReceiver
from streamd.sources.xima.models import CALL_FINISHED_TYPE, CallFinished
from streamd.telemetry import Health
from tests.helpers import MemoryWebhooks, running

from .xima_helpers import make_source

pytestmark = pytest.mark.anyio

SECRET = {"X-Streamd-Secret": "s3cret"}


class RefusingEmit(MemoryEmit):
    """Refuses (``PublishError``, as Kafka down and the spool full) while ``refuse``; ``block``
    makes it never return instead (a pipeline backed up beyond the deadline)."""

    def __init__(self) -> None:
        super().__init__()
        self.refuse = False
        self.block = False

    async def __call__(self, events: Sequence[Event]) -> None:
        if self.block:
            await anyio.sleep_forever()
        if self.refuse:
            raise PublishError("kafka down and the spool full")
        await super().__call__(events)


@asynccontextmanager
async def receiver(emit: MemoryEmit, **calls: object) -> AsyncIterator[tuple[httpx.AsyncClient, str]]:
    """A calls-only Xima source registered on a served MemoryWebhooks; yields a client and the URL."""
    webhooks = MemoryWebhooks()
    async with XimaSimulator() as sim:
        source = make_source(sim, metrics=[], webhooks=webhooks, calls={"secret": "s3cret", **calls})
        async with running(source, emit), serving(webhooks.app()) as url, httpx.AsyncClient() as client:
            yield client, f"{url}/webhooks/xima/cr1"


async def test_the_secret_is_required_and_get_and_post_are_read() -> None:
    emit = MemoryEmit()
    async with receiver(emit) as (client, url):
        missing = await client.post(url, params={"callId": "7"})
        wrong = await client.post(url, params={"callId": "7"}, headers={"X-Streamd-Secret": "s3cre"})
        put = await client.put(url, params={"callId": "7"}, headers=SECRET)
        get = await client.get(url, params={"callId": "7", "agent": "Bob"}, headers=SECRET)
        post = await client.post(
            url, params={"callId": "8"}, json={"direction": "Inbound", "talking": 42}, headers=SECRET
        )
    assert [r.status_code for r in (missing, wrong, put, get, post)] == [401, 401, 405, 200, 200]
    events = emit.of_type(CALL_FINISHED_TYPE)
    assert [(e.key, e.topic) for e in events] == [("cr1:7", "xima.calls"), ("cr1:8", "xima.calls")]
    first, second = (e.data for e in events)
    assert isinstance(first, CallFinished)
    assert isinstance(second, CallFinished)
    assert (first.method, first.fields) == ("GET", {"callId": "7", "agent": "Bob"})
    assert second.fields == {"callId": "8", "direction": "Inbound", "talking": 42}
    assert "s3cret" not in repr([e.data for e in emit.events])


async def test_a_push_without_call_id_is_a_dead_letter_and_400() -> None:
    emit = MemoryEmit()
    async with receiver(emit, call_id_field="Call ID") as (client, url):
        keyless = await client.post(url, params={"callId": "7"}, headers=SECRET)
        keyed = await client.post(url, params={"Call ID": "7"}, headers=SECRET)
    assert (keyless.status_code, keyed.status_code) == (400, 200)
    assert "'Call ID'" in keyless.text
    dead = [e.data for e in emit.events if e.topic == "deadletter"]
    assert [(d.error_type, d.stage) for d in dead] == [("missing_key", "processing")]
    assert "callId=7" in str(dead[0].raw)
    assert [e.key for e in emit.of_type(CALL_FINISHED_TYPE)] == ["cr1:7"]


async def test_a_body_beyond_max_body_is_413_before_anything_is_published() -> None:
    emit = MemoryEmit()
    async with receiver(emit, max_body=1024) as (client, url):
        big = await client.post(url, params={"callId": "7"}, content=b"x" * 2048, headers=SECRET)
    assert big.status_code == 413
    assert emit.events == []


async def test_2xx_only_once_durable_503_while_kafka_and_the_spool_refuse_or_past_the_deadline() -> None:
    emit = RefusingEmit()
    async with receiver(emit, deadline=0.2) as (client, url):
        emit.refuse = True
        refused = await client.post(url, params={"callId": "1"}, headers=SECRET)
        emit.refuse, emit.block = False, True
        late = await client.post(url, params={"callId": "2"}, headers=SECRET)
        emit.block = False
        accepted = await client.post(url, params={"callId": "3"}, headers=SECRET)
    assert [r.status_code for r in (refused, late, accepted)] == [503, 503, 200]
    assert [e.key for e in emit.of_type(CALL_FINISHED_TYPE)] == ["cr1:3"]


async def test_the_route_is_gone_once_the_source_stopped() -> None:
    webhooks = MemoryWebhooks()
    async with XimaSimulator() as sim:
        source = make_source(sim, metrics=[], webhooks=webhooks, calls={"secret": "s3cret"})
        async with running(source, MemoryEmit()):
            assert ("xima", "cr1") in webhooks.handlers
    assert ("xima", "cr1") not in webhooks.handlers


async def test_the_daemons_http_app_routes_get_and_post_and_each_handler_decides() -> None:
    """Through streamd.http.app (not MemoryWebhooks): a profile set to GET (000 L1058) reaches the
    Xima receiver; O2G's receiver still answers a GET with 405."""
    webhooks = Webhooks()
    emit = MemoryEmit()
    o2g = WebhookReceiver(source="pbx1", emit=MemoryEmit(), deadline=1.0, max_event_size=1 << 20)
    webhooks.register("o2g", "pbx1", o2g.handle)
    async with XimaSimulator() as sim:
        source = make_source(sim, metrics=[], webhooks=webhooks, calls={"secret": "s3cret"})
        async with (
            running(source, emit),
            serving(build_app(Health(), webhooks)) as url,
            httpx.AsyncClient() as client,
        ):
            get = await client.get(f"{url}/webhooks/xima/cr1", params={"callId": "9"}, headers=SECRET)
            post = await client.post(f"{url}/webhooks/xima/cr1", params={"callId": "10"}, headers=SECRET)
            o2g_get = await client.get(f"{url}/webhooks/o2g/pbx1")
            unknown = await client.get(f"{url}/webhooks/xima/nope")
    assert (get.status_code, post.status_code) == (200, 200)
    assert [e.key for e in emit.of_type(CALL_FINISHED_TYPE)] == ["cr1:9", "cr1:10"]
    assert (o2g_get.status_code, o2g_get.headers["allow"]) == (405, "POST")
    assert unknown.status_code == 404


async def test_a_dead_letter_that_is_not_durable_is_answered_503_so_the_push_is_made_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    emit = RefusingEmit()
    async with receiver(emit, deadline=0.2, call_id_field="Call ID") as (client, url):
        emit.block = True
        with caplog.at_level(logging.DEBUG, logger="streamd.sources.xima"):
            late = await client.post(url, params={"callId": "7"}, headers=SECRET)
        emit.block = False
        kept = await client.post(url, params={"callId": "7"}, headers=SECRET)  # made again: now durable
    assert (late.status_code, kept.status_code) == (503, 400)
    assert "dead letter not accepted" in late.text
    (line,) = [r for r in caplog.records if "answering call-finished pushes 503" in r.getMessage()]
    assert "the dead letter of a push without a call id" in line.getMessage()
    dead = [e.data for e in emit.events if e.topic == "deadletter"]
    assert [d.error_type for d in dead] == ["missing_key"]
