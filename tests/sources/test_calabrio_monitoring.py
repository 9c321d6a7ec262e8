"""Calabrio contact monitoring against the simulator (issue 21 item 10): the gauges, and a
``streamd.source.Status`` when recording stops, read back from Kafka."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from streamd.embedded import EmbeddedBroker
from streamd.events import SOURCE_STATUS_TOPIC, SourceStatus
from streamd.publish.memory import MemoryEmit
from streamd.sim.calabrio import CalabrioSimulator
from streamd.sources.calabrio.config import CalabrioSourceConfig
from streamd.sources.calabrio.monitoring import ContactsSpec
from streamd.sources.calabrio.source import CalabrioSource
from streamd.telemetry import REGISTRY, ComponentState
from tests.harness import running_daemon
from tests.helpers import Clock, running, source_deps, until
from tests.kafka_helpers import read_topic

pytestmark = pytest.mark.anyio

T0 = 1_767_225_600_000
CONTACTS = "/api/rest/monitoring/contacts/lite"


def config(sim: CalabrioSimulator, **kw: object) -> CalabrioSourceConfig:
    return CalabrioSourceConfig.model_validate(
        {"kind": "calabrio", "name": "wfm", "url": sim.url, "username": sim.username,
         "password": sim.password, "contact_monitoring": True, "reference_publish": False, **kw}
    )  # fmt: skip


def gauge(name: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(name, labels)


async def test_the_counts_are_gauges_and_a_stop_and_its_end_are_status_events() -> None:
    clock = Clock(T0)
    async with CalabrioSimulator(agents=1, clock_ms=clock) as sim:
        src = CalabrioSource(config(sim, recording_min_contacts=5), source_deps("wfm"), now_ms=clock)
        async with src.client(src.contacts_auth) as client:
            spec = ContactsSpec("wfm", client, CONTACTS, 5, clock)
            first = await spec.fetch(None)  # the seed's example: recording works
            counts = [
                gauge("streamd_calabrio_contacts", source="wfm", recording=r)
                for r in ("all", "audio", "video")
            ]
            sim.set_contacts("12", 0)
            stopped = await spec.fetch(first.cursor)
            recording_while_stopped = gauge("streamd_calabrio_recording", source="wfm")
            again = await spec.fetch(stopped.cursor)  # still stopped: nothing new
            sim.set_contacts(14, 3)
            resumed = await spec.fetch(again.cursor)
    assert counts == [215, 175, 85]
    assert first.events == []  # a start publishes a stop only
    assert recording_while_stopped == 0
    (event,) = stopped.events
    assert (event.topic, event.type, event.key) == (SOURCE_STATUS_TOPIC, "streamd.source.Status", "wfm")
    status = event.data
    assert isinstance(status, SourceStatus)
    assert (status.scope, status.status) == ("recording", "stale")
    assert (
        status.reason == "recording stopped: 12 contacts in the past 15 minutes, none with an audio recording"
    )
    assert again.events == []
    assert [(e.data.status, e.data.reason) for e in resumed.events] == [
        ("live", "recording again: 3 of 14 contacts in the past 15 minutes have audio")
    ]
    assert gauge("streamd_calabrio_recording", source="wfm") == 1


async def test_without_administer_tenant_the_contacts_job_fails_alone() -> None:
    emit = MemoryEmit()
    async with CalabrioSimulator(agents=1) as sim:
        sim.fail_next(403, path=CONTACTS, times=10_000)
        cfg = config(sim, interval=0.05, timeout=0.04, contact_monitoring_interval=0.05)
        src = CalabrioSource(cfg, source_deps("wfm", failed_retry=3600))
        async with running(src, emit, start_timeout=5):
            await until(lambda: src.deps.component.jobs["contacts"].state is ComponentState.FAILED)
            assert src.deps.component.jobs["activity"].state is ComponentState.RUNNING
        assert "HTTP 403" in src.deps.component.jobs["contacts"].detail


@pytest.mark.kafka
async def test_a_recording_stop_reaches_the_source_status_topic(tmp_path: Path) -> None:
    async with EmbeddedBroker() as bootstrap, CalabrioSimulator(agents=1) as sim:
        sim.set_contacts(40, 0, 0)
        kafka = {"bootstrap_servers": bootstrap, "idempotence": False}
        block = {"kind": "calabrio", "name": "wfm", "url": sim.url, "username": sim.username,
                 "password": sim.password, "interval": "300ms", "timeout": "250ms",
                 "contact_monitoring": True, "contact_monitoring_interval": "300ms"}  # fmt: skip
        async with running_daemon(tmp_path, block, kafka=kafka):
            records = await read_topic(bootstrap, "streamd.source-status", lambda rs: len(rs) >= 1)
    value = orjson.loads(records[0].value)
    assert records[0].key == b"wfm"
    assert (value["scope"], value["status"]) == ("recording", "stale")
    assert value["reason"].startswith("recording stopped: 40 contacts")
