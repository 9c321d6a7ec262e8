"""The feed API and page over real HTTP on loopback (uvicorn, no Kafka): snapshot, SSE, settings,
auth, CORS."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import anyio.lowlevel
import httpx
import orjson
import pytest

from streamd.events import AgentState, QueueMetric, State, utcnow
from streamd.http.app import Webhooks, build_app
from streamd.http.server import serve
from streamd.publish.encoding import dumps
from streamd.telemetry import ComponentState, Health
from streamd.wallboard.api import build_routes
from streamd.wallboard.config import WallboardConfig
from streamd.wallboard.hub import CLIENTS_DROPPED, StateHub
from streamd.wallboard.openapi import COMMITTED, openapi_document

pytestmark = pytest.mark.anyio

TOKEN = "s3cret-wallboard-token"


def agent(
    i: int, state: State = State.AVAILABLE, source: str = "s1", queues: tuple[str, ...] = ()
) -> AgentState:
    return AgentState(vendor="test", source=source, agent_id=str(i), state=state, queue_ids=queues)


@asynccontextmanager
async def serving(hub: StateHub, **kw: Any) -> AsyncIterator[str]:
    app = build_app(Health(), Webhooks(), build_routes(hub, **kw))
    async with anyio.create_task_group() as tg:
        port = await tg.start(serve, app, "127.0.0.1", 0)
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            hub.close()
            tg.cancel_scope.cancel()


class SSE:
    """Reads Server-Sent Events from a streaming httpx response."""

    def __init__(self, response: httpx.Response) -> None:
        self.lines = response.aiter_lines()

    async def next(self, skip_pings: bool = True) -> tuple[str | None, str, Any]:
        """(id, event, data) of the next event."""
        with anyio.fail_after(3):
            while True:
                fields: dict[str, str] = {}
                async for line in self.lines:
                    if not line:
                        break
                    name, _, value = line.partition(": ")
                    fields[name] = value
                else:
                    raise EOFError("the stream ended")
                if "data" in fields and not (skip_pings and fields.get("event") == "ping"):
                    return fields.get("id"), fields.get("event", "message"), orjson.loads(fields["data"])


async def test_state_snapshot_is_json_and_filterable() -> None:
    hub = StateHub()
    hub.update_agent(agent(1, queues=("q1",)))
    hub.update_agent(agent(2, State.BUSY, source="s2"))
    hub.update_metric(QueueMetric(vendor="test", source="s1", queue_id="q1", metric="waiting_calls", value=4))
    async with serving(hub) as base, httpx.AsyncClient(base_url=base) as client:
        everything = (await client.get("/api/v1/state")).json()
        busy = (await client.get("/api/v1/state", params={"state": "busy"})).json()
        s1 = (await client.get("/api/v1/state?source=s1&queue=q1")).json()
    assert everything["id"] == f"{hub.epoch}.3"
    assert [a["agent_id"] for a in everything["agents"]] == ["1", "2"]
    assert everything["agents"][0] == {
        "vendor": "test",
        "source": "s1",
        "agent_id": "1",
        "state": "available",
        "agent_name": None,
        "vendor_state": None,
        "reason_code": None,
        "reason_label": None,
        "since": everything["agents"][0]["since"],
        "queue_ids": ["q1"],
    }
    assert everything["metrics"][0]["value"] == 4
    assert [a["agent_id"] for a in busy["agents"]] == ["2"]
    assert [a["agent_id"] for a in s1["agents"]] == ["1"]
    assert len(s1["metrics"]) == 1


async def test_stream_sends_a_snapshot_then_deltas_and_resumes_from_last_event_id() -> None:
    hub = StateHub()
    hub.update_agent(agent(1))
    async with serving(hub) as base, httpx.AsyncClient(base_url=base, timeout=5) as client:
        async with client.stream("GET", "/api/v1/stream") as response:
            assert response.headers["content-type"].startswith("text/event-stream")
            events = SSE(response)
            event_id, kind, snap = await events.next()
            assert (kind, event_id, [a["agent_id"] for a in snap["agents"]]) == (
                "snapshot",
                hub.event_id,
                ["1"],
            )
            hub.update_agent(agent(1, State.BUSY))
            event_id, kind, delta = await events.next()
            assert (kind, event_id) == ("delta", f"{hub.epoch}.2")
            assert delta["key"] == "s1:1"
            assert delta["value"]["state"] == "busy"
            assert event_id is not None
            last = event_id
        # missed while away: replayed, then "resumed", then live again
        hub.update_agent(agent(2))
        hub.update_agent(agent(1, State.NOT_READY))
        async with client.stream("GET", "/api/v1/stream", headers={"Last-Event-ID": last}) as response:
            events = SSE(response)
            got = [await events.next() for _ in range(3)]
            assert [(k, d.get("key")) for _, k, d in got] == [
                ("delta", "s1:2"),
                ("delta", "s1:1"),
                ("resumed", None),
            ]
            assert got[-1][0] == hub.event_id
        # an id from another process: a fresh snapshot
        async with client.stream(
            "GET", "/api/v1/stream?last_event_id=feedbeef.2&state=not_ready"
        ) as response:
            _, kind, snap = await SSE(response).next()
            assert kind == "snapshot"
            assert [a["agent_id"] for a in snap["agents"]] == ["1"]
    assert hub.subscribers == 0


async def test_stream_ends_when_the_hub_closes_and_sends_pings() -> None:
    hub = StateHub()
    async with (
        serving(hub, heartbeat=0.05) as base,
        httpx.AsyncClient(base_url=base, timeout=5) as client,
        client.stream("GET", "/api/v1/stream") as response,
    ):
        events = SSE(response)
        assert (await events.next())[1] == "snapshot"
        _, kind, ping = await events.next(skip_pings=False)
        assert (kind, ping) == ("ping", {"heartbeat": 0.05})
        hub.close()
        with anyio.fail_after(3):
            rest = [line async for line in events.lines]
        assert not any(line.startswith("event: delta") for line in rest)
        # later clients (a wallboard reconnecting while the daemon stops) get a stream that ends
        async with client.stream("GET", "/api/v1/stream") as again:
            with anyio.fail_after(3):
                lines = [line async for line in again.aiter_lines()]
        assert "event: snapshot" in lines


async def test_a_client_that_disconnects_is_unsubscribed() -> None:
    hub = StateHub()
    async with serving(hub) as base, httpx.AsyncClient(base_url=base, timeout=5) as client:
        async with client.stream("GET", "/api/v1/stream") as response:
            await SSE(response).next()
            assert hub.subscribers == 1
        with anyio.fail_after(3):
            while hub.subscribers:
                await anyio.sleep(0.01)


async def test_token_is_required_accepted_three_ways_and_never_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    hub = StateHub()
    async with serving(hub, token=TOKEN) as base, httpx.AsyncClient(base_url=base, timeout=5) as client:
        for path in ("/api/v1/state", "/api/v1/openapi.json", "/wallboard", "/api/v1/stream"):
            response = await client.get(path)
            assert response.status_code == 401, path
            assert (await client.get(path, headers={"Authorization": "Bearer wrong"})).status_code == 401
        assert (
            await client.get("/api/v1/state", headers={"Authorization": f"Bearer {TOKEN}"})
        ).status_code == 200
        assert (await client.get(f"/api/v1/state?access_token={TOKEN}")).status_code == 200
        page = await client.get(f"/wallboard?token={TOKEN}")
        assert page.status_code == 200
        assert page.headers["referrer-policy"] == "no-referrer"
        assert (await client.get("/wallboard/static/wallboard.js")).status_code == 200  # no data: public
        async with client.stream("GET", f"/api/v1/stream?access_token={TOKEN}") as response:
            assert (await SSE(response).next())[1] == "snapshot"
    server_side = [
        r for r in caplog.records if not r.name.startswith(("httpx", "httpcore"))
    ]  # the client logs URLs
    assert not [r for r in server_side if TOKEN in r.getMessage()]


async def test_cors_origins_apply_to_the_api() -> None:
    hub = StateHub()
    allowed = "https://board.example"
    async with serving(hub, cors_origins=[allowed]) as base, httpx.AsyncClient(base_url=base) as client:
        ok = await client.get("/api/v1/state", headers={"Origin": allowed})
        other = await client.get("/api/v1/state", headers={"Origin": "https://evil.example"})
        preflight = await client.options(
            "/api/v1/state", headers={"Origin": allowed, "Access-Control-Request-Method": "GET"}
        )
    assert ok.headers["access-control-allow-origin"] == allowed
    assert "access-control-allow-origin" not in other.headers
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == allowed


async def test_page_and_static_files_are_served() -> None:
    hub = StateHub()
    async with serving(hub) as base, httpx.AsyncClient(base_url=base) as client:
        page = await client.get("/wallboard")
        css = await client.get("/wallboard/static/wallboard.css")
        doc = (await client.get("/api/v1/openapi.json")).json()
    assert page.status_code == 200
    assert 'src="wallboard/static/wallboard.js"' in page.text
    assert css.status_code == 200
    assert css.headers["content-type"].startswith("text/css")
    assert doc == orjson.loads(COMMITTED.read_bytes())  # what is served is the committed document


def test_openapi_document_is_valid_openapi_31() -> None:
    import openapi_spec_validator as validator

    for auth in (False, True):
        doc = openapi_document(auth=auth)
        validator.validate(doc)
        assert set(doc["paths"]) == {"/api/v1/state", "/api/v1/stream", "/api/v1/wallboard"}
    assert "securitySchemes" in openapi_document(auth=True)["components"]
    assert "securitySchemes" not in openapi_document()["components"]


def test_served_bodies_match_the_documented_schemas() -> None:
    """The snapshot and deltas the API sends validate against the document's (generated) schemas,
    and a body of the wrong shape does not."""
    from jsonschema import Draft202012Validator

    components = openapi_document()["components"]

    def validator(name: str) -> Draft202012Validator:
        return Draft202012Validator({"$ref": f"#/components/schemas/{name}", "components": components})

    hub = StateHub()
    health = Health()
    health.add("s1", "source").set(ComponentState.FAILED, "HTTP 401")
    health.add("wallboard", "feed")
    hub.update_agent(agent(1, State.NOT_READY, queues=("q1",)))
    hub.update_metric(QueueMetric(vendor="t", source="s1", queue_id="q1", metric="waiting", value=3))
    hub.update_metric(QueueMetric(vendor="t", source="s1", queue_id="q1", metric="open", value=True))
    hub.remove("agent", "s1:1")
    hub.touch("s2", utcnow())
    hub.sync(health.components)
    snapshot = orjson.loads(dumps(hub.snapshot()))
    assert snapshot["metrics"]
    assert [s["state"] for s in snapshot["sources"]] == ["failed", None]
    assert snapshot["feed"] == {"state": "starting", "detail": ""}
    validator("Snapshot").validate(snapshot)
    deltas = [orjson.loads(change.payload()) for change in hub.since(f"{hub.epoch}.0") or []]
    assert [d["kind"] for d in deltas] == ["agent", "metric", "metric", "agent", "feed", "source", "source"]
    assert deltas[3]["value"] is None
    for delta in deltas:
        validator("Delta").validate(delta)
    assert not validator("Delta").is_valid({**deltas[0], "kind": "queue"})
    assert not validator("Delta").is_valid({**deltas[5], "value": {"source": "s1", "state": "sleeping"}})
    assert not validator("Snapshot").is_valid({**snapshot, "agents": [{"agent_id": "1"}]})
    assert not validator("Snapshot").is_valid({k: v for k, v in snapshot.items() if k != "sources"})


async def test_state_says_which_replica_runs_each_source_as_documented() -> None:
    """GET /api/v1/state carries each source's placement (here / on replica X / unassigned), and
    the document's SourceStatus describes it."""
    from jsonschema import Draft202012Validator

    from streamd.wallboard.sources import Placement

    components = openapi_document()["components"]
    props = components["schemas"]["SourceStatus"]["properties"]
    assert props["placement"]["enum"] == ["here", "replica", "unassigned", "elsewhere"]
    assert props["replica"]["type"] == "string"
    health = Health()
    health.add("o2g", "source").set(ComponentState.RUNNING)
    hub = StateHub()
    hub.placement = Placement(units=frozenset({"o2g", "xima", "alvaria"}))
    hub.place({"o2g": "10.0.0.5:8080", "xima": "10.0.0.6:8080"}, me="10.0.0.5:8080")
    hub.touch("xima", utcnow())
    hub.sync(health.components)
    async with serving(hub) as base, httpx.AsyncClient(base_url=base) as client:
        body = (await client.get("/api/v1/state")).json()
    where = {s["source"]: (s["state"], s["placement"], s["replica"]) for s in body["sources"]}
    assert where == {
        "o2g": ("running", "here", ""),
        "xima": (None, "replica", "10.0.0.6:8080"),
        "alvaria": (None, "unassigned", ""),
    }
    Draft202012Validator({"$ref": "#/components/schemas/Snapshot", "components": components}).validate(body)


async def test_the_page_settings_are_served_as_configured_and_documented() -> None:
    from jsonschema import Draft202012Validator

    cfg = WallboardConfig.model_validate(
        {
            "stale_after": "90s",
            "thresholds": {
                "metrics": {"waiting": {"warn": 5, "alert": 10}},
                "time_in_state": {"not_ready": {"alert": "20m"}},
            },
            "views": {"sales": {"title": "Sales", "queue": ["60141"], "sections": ["queues"]}},
            "reason_labels": {"pbx1": {"7": "Lunch"}},
        }
    )
    hub = StateHub()
    async with (
        serving(hub, token=TOKEN, settings=cfg.display()) as base,
        httpx.AsyncClient(base_url=base) as client,
    ):
        assert (await client.get("/api/v1/wallboard")).status_code == 401
        response = await client.get(f"/api/v1/wallboard?access_token={TOKEN}")
    assert response.status_code == 200
    body = response.json()
    assert body == cfg.display().model_dump(mode="json")
    assert body["stale_after"] == 90.0  # durations in seconds
    assert body["thresholds"]["time_in_state"] == {"not_ready": {"warn": None, "alert": 1200.0}}
    assert body["views"]["sales"]["sections"] == ["queues"]
    assert "max_agents" not in body  # the hub's own settings stay on the server
    components = openapi_document()["components"]
    check = Draft202012Validator({"$ref": "#/components/schemas/DisplaySettings", "components": components})
    check.validate(body)
    assert not check.is_valid({**body, "page_seconds": "10s"})

    async with serving(StateHub()) as base, httpx.AsyncClient(base_url=base) as client:
        defaults = (await client.get("/api/v1/wallboard")).json()
    assert defaults["thresholds"]["metrics"] == {
        "longest_wait_seconds": {"warn": None, "alert": 60.0, "direction": "above"}
    }


async def test_the_favicon_is_served_to_anyone() -> None:
    async with serving(StateHub(), token=TOKEN) as base, httpx.AsyncClient(base_url=base) as client:
        icon = await client.get("/favicon.ico")
        linked = await client.get("/wallboard/static/favicon.svg")
        page = await client.get(f"/wallboard?token={TOKEN}")
    assert icon.status_code == 200
    assert icon.headers["content-type"].startswith("image/svg+xml")
    assert icon.content.startswith(b"<svg")
    assert icon.content == linked.content
    assert 'rel="icon" href="wallboard/static/favicon.svg"' in page.text


async def test_a_client_that_stops_reading_is_dropped_and_counted() -> None:
    hub = StateHub(client_buffer=8)
    before = CLIENTS_DROPPED._value.get()
    big = "x" * 65_536
    async with (
        serving(hub) as base,
        httpx.AsyncClient(base_url=base, timeout=5) as client,
        client.stream("GET", "/api/v1/stream") as response,
    ):
        assert response.status_code == 200
        with anyio.fail_after(10):
            while hub.subscribers == 0:
                await anyio.sleep(0.01)
            i = 0
            while hub.subscribers:  # the client reads nothing: socket buffers fill, then its queue
                hub.update_agent(
                    AgentState(
                        vendor="t", source="s", agent_id=str(i % 50), state=State.BUSY, agent_name=f"{big}{i}"
                    )
                )
                i += 1
                await anyio.lowlevel.checkpoint()
        assert CLIENTS_DROPPED._value.get() - before == 1
        assert i > 8  # the server wrote until the network pushed back
        with anyio.fail_after(10):  # reading now: what was sent and buffered, then the end
            async for _ in response.aiter_bytes():
                pass


async def test_a_reconnecting_client_gets_the_shared_snapshot_then_the_changes_since() -> None:
    hub = StateHub()
    hub.update_agent(agent(1))
    hub.update_agent(agent(2))
    async with serving(hub) as base, httpx.AsyncClient(base_url=base, timeout=5) as client:
        async with client.stream("GET", "/api/v1/stream") as response:
            snapshot_id, kind, _ = await SSE(response).next()
            assert (kind, snapshot_id) == ("snapshot", hub.event_id)
        hub.update_agent(agent(1, State.BUSY))
        hub.update_agent(agent(3))
        async with client.stream("GET", "/api/v1/stream?state=busy,available") as response:
            events = SSE(response)
            assert (await events.next())[1] == "snapshot"  # a new filter: its own encoding
        async with client.stream("GET", "/api/v1/stream") as response:
            events = SSE(response)
            got = [await events.next() for _ in range(3)]
    assert [(i, k) for i, k, _ in got] == [
        (snapshot_id, "snapshot"),  # the encoding made for the first client
        (f"{hub.epoch}.3", "delta"),
        (f"{hub.epoch}.4", "delta"),
    ]
    board = {a["agent_id"]: a["state"] for a in got[0][2]["agents"]}
    for _, _, delta in got[1:]:
        board[delta["value"]["agent_id"]] = delta["value"]["state"]
    assert board == {"1": "busy", "2": "available", "3": "available"}


async def test_a_snapshot_larger_than_one_write_arrives_whole() -> None:
    from streamd.wallboard.sse import WRITE_SLICE

    hub = StateHub()
    n = 0
    while len(dumps(list(hub.agents.values()))) < 3 * WRITE_SLICE:
        for _ in range(500):
            n += 1
            hub.update_agent(agent(n, queues=("q1",)))
    async with (
        serving(hub) as base,
        httpx.AsyncClient(base_url=base, timeout=5) as client,
        client.stream("GET", "/api/v1/stream") as response,
    ):
        events = SSE(response)
        _, kind, snap = await events.next()
        hub.update_agent(agent(1, State.BUSY))
        _, after, delta = await events.next()
    assert kind == "snapshot"
    assert [a["agent_id"] for a in snap["agents"]] == [str(i) for i in range(1, n + 1)]
    assert (after, delta["value"]["state"]) == ("delta", "busy")
