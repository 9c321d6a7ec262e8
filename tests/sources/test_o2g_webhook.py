"""O2G webhook delivery: the simulator POSTs to a real uvicorn server routing to the source's handler."""

from __future__ import annotations

import itertools
import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import anyio
import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import Route

from streamd.errors import PublishError, VendorProtocolError
from streamd.events import AgentState, DeadLetter, Event
from streamd.publish.memory import MemoryEmit
from streamd.sim.o2g import O2GSimulator, serve_app
from streamd.sources.o2g.config import O2GSourceConfig
from streamd.sources.o2g.source import O2GSource
from streamd.sources.o2g.webhook import BATCH_FACTOR, WebhookReceiver, cookie_candidates
from streamd.sources.o2g.wire import MalformedEvent, O2GEventDecoder
from streamd.telemetry import ERRORS
from tests.helpers import MemoryWebhooks, running, source_deps

from .o2g_helpers import call, call_refs, until

pytestmark = pytest.mark.anyio

SECRET = "s3cret"


@asynccontextmanager
async def webhook_source(sim: O2GSimulator, emit: MemoryEmit) -> AsyncIterator[tuple[O2GSource, str]]:
    hooks = MemoryWebhooks()
    async with serve_app(hooks.app()) as base:
        hook_url = f"{base}/webhooks/o2g/pbx1"
        config = O2GSourceConfig(
            name="pbx1",
            url=sim.url,
            username=sim.username,
            password=sim.password,
            packages=["agent", "pilot"],
            delivery="webhook",
            webhook_public_url=hook_url,
            webhook_secret=SECRET,
            request_timeout=2.0,
        )
        source = O2GSource(config, source_deps("pbx1", webhooks=hooks, delays=lambda: itertools.repeat(0.0)))
        async with running(source, emit, start_timeout=2):
            yield source, hook_url
        assert hooks.handlers == {}  # unregistered on the way out


@pytest.mark.parametrize("cookie_style", ["value", "named"])
async def test_webhook_delivery_end_to_end(cookie_style: str) -> None:
    emit = MemoryEmit()
    async with O2GSimulator(agents=2, webhook_cookie=cookie_style) as sim, webhook_source(sim, emit):
        assert len([e for e in emit.events if e.snapshot and isinstance(e.data, AgentState)]) == 2
        sim.publish(call("w1"), call("w2"))
        sim.publish_raw(b'{"eventName":"OnChannelInformation","text":"keepalive"}')
        await until(lambda: call_refs(emit) == ["w1", "w2"])
        await until(lambda: len(sim.webhook_log) == 3)
        assert [status for _, status in sim.webhook_log] == [200, 200, 200]
        assert not any("OnChannelInformation" in e.type for e in emit.events)
    assert any(r.method == "DELETE" and r.path == "/api/rest/1.0/sessions" for r in sim.requests)


async def test_a_post_sent_before_the_subscription_answer_is_accepted_once_its_id_is_known() -> None:
    emit = MemoryEmit()
    state = {"mainState": "LOG_ON", "subState": "READY"}
    early = {"eventName": "OnAgentStateChanged", "loginName": "oxe70100", "state": state}
    async with O2GSimulator(agents=1) as sim:
        sim.post_early(early)  # O2G POSTs as soon as the subscription exists, before answering
        async with webhook_source(sim, emit):
            (sid,) = sim.subscriptions()
            assert sim.webhook_log[0] == (sid, 200)  # not a 403 (which O2G treats as final)
            live = [e for e in emit.events if not e.snapshot]
            assert [e.data for e in live if e.type == "o2g.agent.OnAgentStateChanged"] == [early]


async def test_webhook_rejects_forged_cookie_bad_secret_and_bad_body() -> None:
    emit = MemoryEmit()
    async with O2GSimulator(agents=1) as sim, webhook_source(sim, emit) as (_, url):
        (sid,) = sim.subscriptions()
        body = b'{"eventName":"OnPilotCallCreated","pilot":"60141","caller":"1","callRef":"x","cause":"NEW_CALL"}'
        good = {"secret": SECRET}
        async with httpx.AsyncClient() as http:
            forged = await http.post(url, params=good, content=body, headers={"Cookie": "0123456789abcdef"})
            no_cookie = await http.post(url, params=good, content=body)
            no_secret = await http.post(url, content=body, headers={"Cookie": sid})
            wrong_secret = await http.post(
                url, params={"secret": "nope"}, content=body, headers={"Cookie": sid}
            )
            get = await http.get(url, params=good, headers={"Cookie": sid})
            garbage = await http.post(url, params=good, content=b"{not json", headers={"Cookie": sid})
            encoded = await http.post(
                url, params=good, content=body, headers={"Cookie": f"AlcUserId%3D{sid}"}
            )
            token = next(iter(sim.sessions))  # the seed's example: the session's AlcUserId, URL-encoded
            cookie = {"Cookie": f"AlcUserId%3D{token}"}
            session = await http.post(url, params=good, content=body, headers=cookie)
        assert (forged.status_code, no_cookie.status_code) == (403, 403)
        assert (no_secret.status_code, wrong_secret.status_code) == (401, 401)
        assert (get.status_code, garbage.status_code, encoded.status_code) == (405, 400, 200)
        assert session.status_code == 200
        dead = [e.data for e in emit.events if isinstance(e.data, DeadLetter)]
        assert [d.raw for d in dead] == ["{not json"]
        assert call_refs(emit) == ["x", "x"]  # only the authentic POSTs were published


class StuckEmit:
    async def __call__(self, events: Sequence[Event]) -> None:
        await anyio.sleep_forever()

    async def push(self, events: Sequence[Event]) -> None:
        await anyio.sleep_forever()


async def test_webhook_answers_503_when_events_are_not_durable_in_time() -> None:
    receiver = WebhookReceiver(source="pbx1", emit=StuckEmit(), deadline=0.05, max_event_size=4096)
    receiver.subscription_ids = {"sub-1"}
    app = Starlette(routes=[Route("/hook", receiver.handle, methods=["POST"])])
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://streamd") as http:
        response = await http.post(
            "/hook", content=b'{"eventName":"OnCtiLinkUp","nodeId":"1"}', headers={"Cookie": "sub-1"}
        )
    assert response.status_code == 503


async def test_an_unparseable_body_answers_503_when_its_dead_letter_is_not_durable() -> None:
    receiver = WebhookReceiver(source="pbx1", emit=StuckEmit(), deadline=0.05, max_event_size=4096)
    receiver.subscription_ids = {"sub-1"}
    app = Starlette(routes=[Route("/hook", receiver.handle, methods=["POST"])])
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://streamd") as http:
        response = await http.post("/hook", content=b"{not json", headers={"Cookie": "sub-1"})
    assert response.status_code == 503  # O2G resends it; a 400 would lose the dead letter
    assert response.text == "dead letter not accepted: deadline"


def test_cookie_candidates_cover_whole_value_named_and_url_encoded_forms() -> None:
    assert "abc" in cookie_candidates("abc")
    assert "abc" in cookie_candidates("subscriptionId=abc; other=1")
    assert "abc" in cookie_candidates("AlcUserId%3Dabc")
    assert "abc" not in cookie_candidates("abcd; xabc=y")


class RefusingEmit(MemoryEmit):
    """Stores events like ``MemoryEmit`` but raises ``refusal`` (when set) instead of storing them."""

    def __init__(self) -> None:
        super().__init__()
        self.refusal: Exception | None = None

    async def __call__(self, events: Sequence[Event]) -> None:
        if self.refusal is not None:
            raise self.refusal
        await super().__call__(events)


@pytest.mark.parametrize(
    "refusal",
    [PublishError("kafka did not acknowledge and the spool failed"), anyio.ClosedResourceError()],
    ids=["publish_error", "emitter_closed"],
)
async def test_webhook_answers_503_without_a_traceback_when_the_events_cannot_be_made_durable(
    refusal: Exception, caplog: pytest.LogCaptureFixture
) -> None:
    emit = RefusingEmit()
    async with O2GSimulator(agents=1) as sim, webhook_source(sim, emit):
        before = errors_counted("pbx1")
        emit.refusal = refusal
        sim.publish(call("r1"))
        await until(lambda: any(status == 503 for _, status in sim.webhook_log))
        emit.refusal = None  # Kafka is back: O2G's retry of the same POST succeeds
        await until(lambda: call_refs(emit) == ["r1"] and sim.webhook_log[-1][1] != 503)  # answer logged
        statuses = [status for _, status in sim.webhook_log]
        assert statuses[-1] == 200
        assert set(statuses[:-1]) == {503}
        assert errors_counted("pbx1") > before
    assert not [r for r in caplog.records if r.exc_info]  # a handled answer, not a crash


def errors_counted(source: str) -> float:
    return sum(
        s.value
        for m in ERRORS.collect()
        for s in m.samples
        if s.name.endswith("_total")
        and s.labels.get("source") == source
        and s.labels.get("stage") == "webhook"
    )


@asynccontextmanager
async def receiver_served(
    emit: object, max_event_size: int = 1024
) -> AsyncIterator[tuple[WebhookReceiver, str]]:
    """A bare receiver (subscription ``sub-1``) behind the real uvicorn server."""
    receiver = WebhookReceiver(source="pbx1", emit=emit, deadline=0.2, max_event_size=max_event_size)  # type: ignore[arg-type]
    receiver.subscription_ids = {"sub-1"}
    app = Starlette(routes=[Route("/hook", receiver.handle, methods=["POST"])])
    async with serve_app(app) as base:
        yield receiver, f"{base}/hook"


async def test_webhook_bodies_beyond_the_cap_are_answered_413_without_being_read_whole() -> None:
    emit = MemoryEmit()
    event = b'{"eventName":"OnCtiLinkUp","nodeId":"1"}'
    async with receiver_served(emit) as (receiver, url):
        assert receiver.max_body == 1024 * BATCH_FACTOR
        big = b" " * (receiver.max_body + 1 - len(event)) + event  # valid JSON, one byte too many

        async def chunks(n: int) -> AsyncIterator[bytes]:
            for _ in range(n):
                yield b" " * 1000

        cookie = {"Cookie": "sub-1"}
        async with httpx.AsyncClient(timeout=10) as http:
            declared = await http.post(url, content=big, headers=cookie)
            streamed = await http.post(url, content=chunks(1000), headers=cookie)  # chunked, 1 MB
            unauthenticated = await http.post(url, content=chunks(1000))  # 403 before reading
            fits = await http.post(url, content=big[1:], headers=cookie)  # the same connection still works
    assert (declared.status_code, streamed.status_code) == (413, 413)
    assert declared.text == f"Content-Length {len(big)} exceeds the limit of {receiver.max_body} bytes\n"
    assert streamed.text == f"the body exceeds the limit of {receiver.max_body} bytes\n"
    assert (unauthenticated.status_code, fits.status_code) == (403, 200)
    assert len(emit.events) == 1  # only from the POST within the cap


async def test_webhook_refusals_log_one_line_per_transition(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="streamd.sources.o2g")
    emit = RefusingEmit()
    body = b'{"eventName":"OnCtiLinkUp","nodeId":"1"}'
    async with receiver_served(emit) as (_, url), httpx.AsyncClient(timeout=10) as http:
        emit.refusal = PublishError("outage spool full (2 of 1 bytes)")  # the pipeline logs that
        spool_full = [
            (await http.post(url, content=body, headers={"Cookie": "sub-1"})).status_code for _ in range(3)
        ]
        emit.refusal = anyio.ClosedResourceError()
        closing = [
            (await http.post(url, content=body, headers={"Cookie": "sub-1"})).status_code for _ in range(3)
        ]
        emit.refusal = None
        accepted = [
            (await http.post(url, content=body, headers={"Cookie": "sub-1"})).status_code for _ in range(2)
        ]
    assert (spool_full, closing, accepted) == ([503] * 3, [503] * 3, [200] * 2)
    lines = [(r.levelno, r.getMessage()) for r in caplog.records if r.levelno > logging.DEBUG]
    assert lines == [
        (
            logging.WARNING,
            "o2g pbx1: answering webhook POSTs 503 (O2G resends them): events not accepted: streamd is"
            " shutting down",
        ),
        (logging.INFO, "o2g pbx1: webhook POSTs accepted again"),
    ]


def decoded_by_the_chunk_decoder(body: bytes, max_event_size: int) -> object:
    """What the receiver answered before its one-``loads`` fast path: the chunk decoder's result."""
    decoder = O2GEventDecoder(max_event_size)
    try:
        items = decoder.feed(body)
        decoder.feed_eof()
    except VendorProtocolError:
        return None
    if not items or any(isinstance(i, MalformedEvent) for i in items):
        return None
    return list(items)


@pytest.mark.parametrize(
    "body",
    [
        b'{"eventName":"OnCtiLinkUp","nodeId":"1"}',
        b'  {"eventName":"OnCtiLinkUp","nodeId":"1"}\n',
        b'{"eventName":"OnAgentStateChanged","loginName":"a","n":123456789012345678901234}',
        b'{"eventName":"OnCtiLinkUp","nodeId":"1"}{"eventName":"OnCtiLinkDown","nodeId":"1"}',
        b'{"eventName":"OnCtiLinkUp","nodeId":"1"}\n{"eventName":"OnCtiLinkDown","nodeId":"1"}\n',
        b'[{"eventName":"OnCtiLinkUp","nodeId":"1"},{"eventName":"OnCtiLinkDown","nodeId":"1"}]',
        b'{"eventName":"OnCtiLinkUp","nodeId":"' + b"x" * 100 + b'"}',  # beyond max_event_size
        b'{"eventName":"OnCtiLinkUp"} trailing',
        b"{not json",
        b"[1]",
        b'"text"',
        b"42",
        b"{}",
        b"",
        b"   ",
    ],
)
def test_a_body_decodes_as_the_chunk_decoder_decodes_it(body: bytes) -> None:
    receiver = WebhookReceiver(source="pbx1", emit=MemoryEmit(), deadline=1, max_event_size=100)
    assert receiver.parse(body) == decoded_by_the_chunk_decoder(body, 100)


async def test_a_query_string_once_accepted_is_accepted_again_and_no_other_without_the_secret() -> None:
    emit = MemoryEmit()
    receiver = WebhookReceiver(source="pbx1", emit=emit, deadline=1, max_event_size=4096, secret=SECRET)
    receiver.subscription_ids = {"sub-1"}
    app = Starlette(routes=[Route("/hook", receiver.handle, methods=["POST"])])
    body, cookie = b'{"eventName":"OnCtiLinkUp","nodeId":"1"}', {"Cookie": "sub-1"}
    async with serve_app(app) as base, httpx.AsyncClient(base_url=base, timeout=10) as http:
        statuses = [
            (await http.post(f"/hook?{query}", content=body, headers=cookie)).status_code
            for query in (
                f"secret={SECRET}",
                f"secret={SECRET}",  # the remembered query string
                "secret=wrong",
                f"secret={SECRET}&secret=wrong",  # the last value counts
                f"secret={SECRET}x",
                "",
                f"secret={SECRET}",
            )
        ]
        by_header = await http.post(
            "/hook?other=1", content=body, headers={**cookie, "X-Streamd-Secret": SECRET}
        )
        then = await http.post("/hook?other=1", content=body, headers=cookie)  # a header is not remembered
    assert statuses == [200, 200, 401, 401, 401, 401, 200]
    assert (by_header.status_code, then.status_code) == (200, 401)
    assert len(emit.events) == 4
