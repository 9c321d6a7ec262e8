"""The calabrio-rtdc delivery core against the simulator's real-time data capture endpoint."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from streamd.config_core import KafkaConfig
from streamd.errors import BackOff, FatalError, TransientError
from streamd.events import DEADLETTER_TOPIC, AgentState, State
from streamd.publish.memory import MemoryEmit
from streamd.sim.calabrio import CalabrioSimulator, SimAgent
from streamd.sinks.calabrio_rtdc import CalabrioRtdcSinkConfig, RtdcDelivery, SystematicRejection
from streamd.sinks.calabrio_rtdc.delivery import Rejections
from streamd.sinks.calabrio_rtdc.directory import AgentDirectory
from streamd.sinks.calabrio_rtdc.sink import CalabrioRtdcSink
from streamd.sources.calabrio.auth import auth_for
from streamd.sources.calabrio.config import CalabrioSourceConfig
from streamd.sources.calabrio.source import CalabrioSource
from streamd.sources.http import CertificateError
from tests.helpers import Clock, source_deps
from tests.sources.calabrio_tls import CA_FILE, tls_front

pytestmark = pytest.mark.anyio

CAPTURE = "/api/rest/scheduling/gis/realTimeAgentState"
T0 = datetime(2026, 1, 1, 9, 0, tzinfo=UTC)
T0_MS = 1767258000000


def config(sim: CalabrioSimulator, **kw: object) -> CalabrioRtdcSinkConfig:
    base = {
        "kind": "calabrio-rtdc",
        "from": "pbx1",
        "url": sim.url,
        "username": sim.username,
        "password": sim.password,
    }
    return CalabrioRtdcSinkConfig.model_validate(base | kw)


def states(n: int, agents: int = 3) -> list[tuple[AgentState, int]]:
    cycle = [State.AVAILABLE, State.BUSY, State.AFTER_CALL_WORK, State.NOT_READY, State.LOGGED_OUT]
    out = []
    for i in range(n):
        s = AgentState(
            vendor="o2g",
            source="pbx1",
            agent_id=str(1001 + i % agents),
            state=cycle[i % len(cycle)],
            reason_code="4" if cycle[i % len(cycle)] is State.NOT_READY else None,
            since=T0 + timedelta(seconds=i),
        )
        out.append((s, 0))
    return out


def client(cfg: CalabrioRtdcSinkConfig) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=cfg.url, auth=auth_for(cfg), timeout=cfg.timeout)


async def test_states_arrive_in_batches_in_order_with_the_session_cookie() -> None:
    async with CalabrioSimulator(agents=3, acd_base=1001) as sim:
        cfg = config(sim, batch_size=4, agent_map={"1001": "5001"})
        async with client(cfg) as c:
            report = await RtdcDelivery(cfg, c, MemoryEmit()).deliver(states(10))
        posts = sim.calls(CAPTURE)
    assert (report.sent, report.rejected, report.skipped) == (10, 0, 0)
    assert [len(body) for body in sim.bodies_to(CAPTURE)] == [4, 4, 2]
    assert len(posts) == 3
    assert all(sim.session_of(p) for p in posts)
    assert sim.authorizations == 1
    assert [r["timestamp"] for r in sim.captured] == [T0_MS + i * 1000 for i in range(10)]
    assert sim.captured[:5] == [
        {"acdAgentId": "5001", "gisStateIdentifier": 3, "timestamp": T0_MS, "reasonCode": None},
        {"acdAgentId": "1002", "gisStateIdentifier": 4, "timestamp": T0_MS + 1000, "reasonCode": None},
        {"acdAgentId": "1003", "gisStateIdentifier": 6, "timestamp": T0_MS + 2000, "reasonCode": None},
        {"acdAgentId": "5001", "gisStateIdentifier": 2, "timestamp": T0_MS + 3000, "reasonCode": "4"},
        {"acdAgentId": "1002", "gisStateIdentifier": 1, "timestamp": T0_MS + 4000, "reasonCode": None},
    ]


async def test_rejected_records_are_isolated_and_dead_lettered() -> None:
    dead = MemoryEmit()
    async with CalabrioSimulator(agents=3, acd_base=1001, reject_acd_ids={"1002"}) as sim:
        cfg = config(sim, batch_size=10)
        async with client(cfg) as c:
            report = await RtdcDelivery(cfg, c, dead).deliver(states(6))
    assert (report.sent, report.rejected) == (4, 2)
    assert [r["acdAgentId"] for r in sim.captured] == ["1001", "1003", "1001", "1003"]
    assert [e.topic for e in dead.events] == [DEADLETTER_TOPIC, DEADLETTER_TOPIC]
    letter = dead.events[0].data
    assert (letter.source, letter.stage, letter.error_type) == ("calabrio-rtdc-pbx1", "sink", "rejected")
    assert '"acdAgentId":"1002"' in (letter.raw or "")
    assert "HTTP 400" in letter.error


async def test_unknown_states_are_skipped_not_sent() -> None:
    async with CalabrioSimulator(agents=3, acd_base=1001) as sim:
        cfg = config(sim)
        unknown = AgentState(vendor="o2g", source="pbx1", agent_id="1001", state=State.UNKNOWN, since=T0)
        async with client(cfg) as c:
            report = await RtdcDelivery(cfg, c, MemoryEmit()).deliver([(unknown, 0)])
    assert (report.sent, report.skipped) == (0, 1)
    assert sim.calls(CAPTURE) == []


async def test_server_errors_are_raised_for_retry_and_nothing_is_dead_lettered() -> None:
    dead = MemoryEmit()
    async with CalabrioSimulator(agents=3, acd_base=1001) as sim:
        cfg = config(sim)
        sim.fail_next(503, path=CAPTURE)
        async with client(cfg) as c:
            delivery = RtdcDelivery(cfg, c, dead)
            with pytest.raises(TransientError):
                await delivery.deliver(states(2))
            sim.fail_next(429, path=CAPTURE, retry_after="7")
            with pytest.raises(BackOff) as info:
                await delivery.deliver(states(2))
            await delivery.deliver(states(2))  # the retry (the next session re-reads from the commit)
    assert info.value.delay == 7
    assert dead.events == []
    assert len(sim.captured) == 2


async def test_expired_session_is_renewed_while_delivering() -> None:
    async with CalabrioSimulator(agents=3, acd_base=1001) as sim:
        cfg = config(sim, body="object")
        async with client(cfg) as c:
            delivery = RtdcDelivery(cfg, c, MemoryEmit())
            await delivery.deliver(states(1))
            sim.expire_sessions()
            await delivery.deliver(states(2))
    assert sim.authorizations == 2
    assert [p.status for p in sim.calls(CAPTURE)] == [200, 401, 200, 200]
    assert isinstance(sim.bodies_to(CAPTURE)[0], dict)  # body: object = one record per request


async def test_source_and_sink_log_in_through_the_one_auth_factory() -> None:
    async with CalabrioSimulator(agents=3, acd_base=1001) as sim:
        login = {"url": sim.url + "/", "username": sim.username, "password": sim.password}
        login |= {"tenant_id": "t1", "login_field": "userId", "session_idle": "20m"}
        source_cfg = CalabrioSourceConfig.model_validate({"kind": "calabrio", "name": "wfm", **login})
        sink_cfg = config(sim, **login)
        source = CalabrioSource(source_cfg, source_deps("wfm"))
        sink = CalabrioRtdcSink(sink_cfg, KafkaConfig(bootstrap_servers="127.0.0.1:9"))
        for auth in (source.auth, sink.auth, auth_for(source_cfg)):
            assert auth.authorize_url == sim.url + "/api/rest/authorize"
            assert auth.idle == 1200.0
            assert auth.credentials == auth_for(sink_cfg).credentials
        assert auth_for(sink_cfg).credentials.body()["userId"] == sim.username


# --- a systematic rejection (issue 15 item 11) ---------------------------------------------------


@pytest.mark.parametrize(
    ("body", "accepts", "posts"),
    [
        ("object", "array", 16),  # one request per record, each refused
        ("array", "object", 31),  # one batch refused, split down to every record once
    ],
)
async def test_a_wrong_body_setting_fails_the_delivery_instead_of_dead_lettering_every_record(
    body: str, accepts: str, posts: int
) -> None:
    dead = MemoryEmit()
    async with CalabrioSimulator(agents=3, acd_base=1001, capture_body=accepts) as sim:  # type: ignore[arg-type]
        cfg = config(sim, body=body, batch_size=16)  # and the default reject_limit (10)
        async with client(cfg) as c:
            with pytest.raises(SystematicRejection) as info:
                await RtdcDelivery(cfg, c, dead).deliver(states(16))
        refused = [p.status for p in sim.calls(CAPTURE)]
    assert refused == [400] * posts
    assert dead.events == []  # nothing dead-lettered: the sink fails, the batch is sent again later
    assert isinstance(info.value, FatalError)
    message = str(info.value)
    assert message.startswith("calabrio-rtdc-pbx1: Calabrio rejected the last 16 records and accepted none")
    assert f"expected a JSON {accepts}, got a JSON {body}" in message  # Calabrio's own answer
    assert f"check body ({body})" in message


async def test_rejections_below_the_limit_are_dead_lettered_and_an_accepted_record_resets_the_count() -> None:
    dead = MemoryEmit()
    async with CalabrioSimulator(agents=3, acd_base=1001, reject_acd_ids={"1001", "1002"}) as sim:
        cfg = config(sim, reject_limit=3)
        async with client(cfg) as c:
            delivery = RtdcDelivery(cfg, c, dead)
            rejected, accepted = states(2), states(3)[2:]  # agents 1001, 1002; then 1003
            await delivery.deliver(rejected)  # 2 in a row: below the limit
            await delivery.deliver(accepted)  # accepted: the count starts again
            await delivery.deliver(rejected)
            assert delivery.rejections.in_a_row == 2
            with pytest.raises(SystematicRejection, match="rejected the last 3 records"):
                await delivery.deliver(states(1))
    assert len(dead.events) == 4  # the two batches below the limit; not the one that failed
    assert [r["acdAgentId"] for r in sim.captured] == ["1003"]


async def test_a_retried_session_that_is_rejected_again_fails_at_once() -> None:
    dead = MemoryEmit()
    async with CalabrioSimulator(agents=3, acd_base=1001, capture_body="array") as sim:
        cfg = config(sim, body="object", reject_limit=5)
        rejections = Rejections()  # the sink's, kept across its sessions
        for batch in (states(5), states(1)):  # the first session's batch; the retry's first record
            async with client(cfg) as c:
                with pytest.raises(SystematicRejection):
                    await RtdcDelivery(cfg, c, dead, rejections).deliver(batch)
    assert len(sim.calls(CAPTURE)) == 5 + 1  # the retry failed at its first rejected record
    assert dead.events == []


# --- TLS (issue 16 item 9) -------------------------------------------------------------------------


async def test_the_sink_refuses_an_untrusted_certificate_and_trusts_its_ca_file(
    caplog: pytest.LogCaptureFixture,
) -> None:
    kafka = KafkaConfig(bootstrap_servers="127.0.0.1:9")
    async with CalabrioSimulator(agents=3, acd_base=1001) as sim, tls_front(sim.url) as https:
        untrusted = CalabrioRtdcSink(config(sim, url=https), kafka)
        async with untrusted.client() as c:
            with pytest.raises(CertificateError, match="TLS certificate not trusted"):
                await RtdcDelivery(untrusted.cfg, c, MemoryEmit()).deliver(states(2))
        assert sim.requests == []
        trusted = CalabrioRtdcSink(config(sim, url=https, ca_file=str(CA_FILE)), kafka)
        unverified = CalabrioRtdcSink(config(sim, url=https, verify_tls=False), kafka)
        with caplog.at_level(logging.WARNING):
            for sink in (trusted, unverified):
                async with sink.client() as c:
                    report = await RtdcDelivery(sink.cfg, c, MemoryEmit()).deliver(states(2))
                assert report.sent == 2
    assert len(sim.captured) == 4
    assert [r.getMessage() for r in caplog.records] == [
        "calabrio-rtdc sink calabrio-rtdc-pbx1: TLS certificate verification is OFF (verify_tls: false): "
        "anyone on the path can read and change the traffic"
    ]


# --- the body's content type (issue 21 item 9) -----------------------------------------------------


@pytest.mark.parametrize("body", ["array", "object"])
async def test_multipart_sends_the_records_as_json_text_in_the_configured_form_field(body: str) -> None:
    async with CalabrioSimulator(
        agents=3, acd_base=1001, capture_format="multipart", capture_field="agentStates"
    ) as sim:
        cfg = config(sim, content_type="multipart", form_field="agentStates", body=body, batch_size=4)
        async with client(cfg) as c:
            report = await RtdcDelivery(cfg, c, MemoryEmit()).deliver(states(6))
    assert (report.sent, report.rejected) == (6, 0)
    assert [p.status for p in sim.calls(CAPTURE)] == [200] * (2 if body == "array" else 6)
    assert all(p.headers["content-type"].startswith("multipart/form-data") for p in sim.calls(CAPTURE))
    assert [r["timestamp"] for r in sim.captured] == [T0_MS + i * 1000 for i in range(6)]
    assert sim.captured[3] == {
        "acdAgentId": "1001",
        "gisStateIdentifier": 2,
        "timestamp": T0_MS + 3000,
        "reasonCode": "4",
    }


async def test_multipart_records_are_isolated_and_dead_lettered_like_json_ones() -> None:
    dead = MemoryEmit()
    async with CalabrioSimulator(
        agents=3, acd_base=1001, capture_format="multipart", reject_acd_ids={"1002"}
    ) as sim:
        cfg = config(sim, content_type="multipart")
        async with client(cfg) as c:
            report = await RtdcDelivery(cfg, c, dead).deliver(states(6))
    assert (report.sent, report.rejected) == (4, 2)
    assert {r["acdAgentId"] for r in sim.captured} == {"1001", "1003"}
    assert [e.topic for e in dead.events] == [DEADLETTER_TOPIC] * 2


@pytest.mark.parametrize(("sends", "takes"), [("json", "multipart"), ("multipart", "json")])
async def test_a_content_type_the_tenant_does_not_take_fails_the_delivery_with_the_setting(
    sends: str, takes: str
) -> None:
    dead = MemoryEmit()
    async with CalabrioSimulator(agents=3, acd_base=1001, capture_format=takes) as sim:  # type: ignore[arg-type]
        cfg = config(sim, content_type=sends)
        async with client(cfg) as c:
            with pytest.raises(FatalError) as info:
                await RtdcDelivery(cfg, c, dead).deliver(states(3))
    assert [p.status for p in sim.calls(CAPTURE)] == [415]
    assert sim.captured == []
    assert dead.events == []
    message = str(info.value)
    assert f"refused the content type ({sends}): HTTP 415" in message
    assert "set content_type" in message


async def test_a_multipart_form_without_the_configured_field_is_a_systematic_rejection() -> None:
    async with CalabrioSimulator(
        agents=3, acd_base=1001, capture_format="multipart", capture_field="records"
    ) as sim:
        cfg = config(sim, content_type="multipart", reject_limit=3)  # form_field: data
        async with client(cfg) as c:
            with pytest.raises(SystematicRejection, match="has no field 'records'"):
                await RtdcDelivery(cfg, c, MemoryEmit()).deliver(states(3))
    assert sim.captured == []


# --- automatic acdAgentId mapping (issue 21 item 7) -------------------------------------------------


def state_of(agent: str) -> tuple[AgentState, int]:
    return AgentState(vendor="o2g", source="pbx1", agent_id=agent, state=State.AVAILABLE, since=T0), 0


async def test_without_automatic_mapping_unknown_agents_are_sent_with_their_own_id() -> None:
    async with CalabrioSimulator(agents=2) as sim:  # acdId 5001, 5002
        cfg = config(sim, map_by_acd_id=False)
        async with client(cfg) as c:
            report = await RtdcDelivery(cfg, c, MemoryEmit()).deliver([state_of("1001"), state_of("5001")])
    assert (report.sent, report.unmapped) == (2, 0)
    assert [r["acdAgentId"] for r in sim.captured] == ["1001", "5001"]
    assert sim.calls("/api/rest/scheduling/agent") == []  # the agent list is not needed


async def test_the_agent_list_is_reread_every_reference_refresh_and_a_failed_reread_keeps_the_last() -> None:
    clock = Clock(0.0)
    async with CalabrioSimulator(agents=2, acd_base=1001) as sim:
        cfg = config(sim, reference_refresh="1h")
        directory = AgentDirectory(cfg, clock=clock)
        dead = MemoryEmit()
        async with client(cfg) as c:
            delivery = RtdcDelivery(cfg, c, dead, directory=directory)
            assert (await delivery.deliver([state_of("1001")])).sent == 1
            clock.now += 3599
            assert (await delivery.deliver([state_of("1002")])).sent == 1  # not re-read yet
            clock.now += 1
            assert (await delivery.deliver([state_of("1002")])).sent == 1  # re-read
            sim.fail_next(500, path="/api/rest/scheduling/agent")
            clock.now += 3600
            assert (await delivery.deliver([state_of("1002")])).sent == 1  # the last copy maps it
    assert [p.status for p in sim.calls("/api/rest/scheduling/agent")] == [200, 200, 500]
    assert [r["acdAgentId"] for r in sim.captured] == ["1001", "1002", "1002", "1002"]
    assert dead.events == []


async def test_an_unknown_agent_rereads_the_list_at_most_once_a_minute_before_it_is_dead_lettered() -> None:
    clock = Clock(0.0)
    async with CalabrioSimulator(agents=1, acd_base=1001) as sim:
        cfg = config(sim, reference_refresh="1h")
        dead = MemoryEmit()
        async with client(cfg) as c:
            delivery = RtdcDelivery(cfg, c, dead, directory=AgentDirectory(cfg, clock=clock))
            assert (await delivery.deliver([state_of("1001")])).sent == 1
            sim.world.agents.append(SimAgent(102, "1002", "Ben", "Okafor"))  # hired after the read
            clock.now += 59
            assert (await delivery.deliver([state_of("1002")])).unmapped == 1  # read under a minute ago
            clock.now += 1
            assert (await delivery.deliver([state_of("1002")])).sent == 1  # re-read first: known now
            assert (await delivery.deliver([state_of("9999")])).unmapped == 1  # no second re-read yet
    assert [p.status for p in sim.calls("/api/rest/scheduling/agent")] == [200, 200]
    assert [r["acdAgentId"] for r in sim.captured] == ["1001", "1002"]
    assert [e.data.error_type for e in dead.events] == ["unmapped_agent", "unmapped_agent"]


async def test_an_empty_agent_list_is_warned_about_once(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock(0.0)
    async with CalabrioSimulator(agents=0) as sim:  # a 200 with [] (e.g. a missing permission)
        cfg = config(sim)
        dead = MemoryEmit()
        with caplog.at_level(logging.WARNING, logger="streamd.sinks.calabrio_rtdc"):
            async with client(cfg) as c:
                delivery = RtdcDelivery(cfg, c, dead, directory=AgentDirectory(cfg, clock=clock))
                for _ in range(3):
                    assert (await delivery.deliver([state_of("1001")])).unmapped == 1
                    clock.now += 60  # each delivery re-reads the list
    assert len(sim.calls("/api/rest/scheduling/agent")) == 3
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [
        "calabrio-rtdc-pbx1: Calabrio answered /api/rest/scheduling/agent with no agents (a permission the "
        "API user lacks?): every agent not in agent_map is dead-lettered"
    ]


async def test_an_unreadable_first_agent_list_fails_the_delivery_and_sends_nothing() -> None:
    async with CalabrioSimulator(agents=1, acd_base=1001) as sim:
        sim.fail_next(503, path="/api/rest/scheduling/agent")
        cfg = config(sim)
        dead = MemoryEmit()
        async with client(cfg) as c:
            with pytest.raises(TransientError, match="GET /api/rest/scheduling/agent: HTTP 503"):
                await RtdcDelivery(cfg, c, dead).deliver([state_of("1001")])
    assert sim.calls(CAPTURE) == []
    assert dead.events == []
