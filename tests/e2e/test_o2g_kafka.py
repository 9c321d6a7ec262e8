"""O2G simulator -> the daemon (in process) -> the embedded broker, read back by an independent consumer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from streamd.embedded import free_port
from streamd.publish.encoding import header_dict
from streamd.sim.o2g import O2GSimulator
from tests.harness import running_daemon
from tests.helpers import until
from tests.kafka_helpers import read_topic
from tests.sources.o2g_helpers import call

pytestmark = [pytest.mark.kafka, pytest.mark.anyio]


def o2g_source(sim: O2GSimulator, name: str, *packages: str, **extra: Any) -> dict[str, Any]:
    """A source block for ``sim``."""
    return {
        "kind": "o2g",
        "name": name,
        "url": sim.url,
        "username": sim.username,
        "password": sim.password,
        "packages": list(packages),
        **extra,
    }


def created(records: list[Any]) -> list[Any]:
    """The ``OnPilotCallCreated`` records."""
    return [r for r in records if header_dict(r.headers)["ce_type"] == "o2g.pilot.OnPilotCallCreated"]


async def test_o2g_events_reach_kafka_with_keys_headers_and_snapshot_flag(tmp_path: Path) -> None:
    async with O2GSimulator(agents=3) as sim:
        block = o2g_source(sim, "pbx1", "agent", "pilot", "telephony")
        async with running_daemon(tmp_path, block) as runtime:
            refs = [f"k{i}" for i in range(50)]
            sim.publish(*(call(r, pilot="60141", caller="6") for r in refs))
            pilot = await read_topic(
                runtime.bootstrap, "streamd.o2g.pilot", lambda rs: len(rs) >= 2 + len(refs)
            )
            states = await read_topic(runtime.bootstrap, "streamd.agent-state", lambda rs: len(rs) >= 3)

    calls = created(pilot)
    assert [orjson.loads(r.value)["callRef"] for r in calls] == refs  # one key, one partition: in order
    headers = header_dict(calls[0].headers)
    assert calls[0].key == b"pbx1:60141"
    assert headers["ce_source"] == "streamd/pbx1"
    assert headers["ce_subject"] == "pbx1:60141"
    assert "streamd_snapshot" not in headers
    snapshots = [r for r in pilot if header_dict(r.headers)["ce_type"] == "o2g.pilot.PilotSnapshot"]
    assert {r.key for r in snapshots} == {b"pbx1:60141", b"pbx1:60142"}
    assert all(header_dict(r.headers).get("streamd_snapshot") == "true" for r in snapshots)
    assert {r.key for r in states} == {b"pbx1:oxe70100", b"pbx1:oxe70101", b"pbx1:oxe70102"}
    assert {orjson.loads(r.value)["state"] for r in states} == {"available"}
    assert any(r.method == "DELETE" and r.path == "/api/rest/1.0/sessions" for r in sim.requests)


async def test_o2g_webhook_posts_are_acknowledged_after_kafka(tmp_path: Path) -> None:
    port = free_port()
    async with O2GSimulator(agents=1) as sim:
        block = o2g_source(
            sim,
            "pbx2",
            "pilot",
            delivery="webhook",
            webhook_public_url=f"http://127.0.0.1:{port}/webhooks/o2g/pbx2",
            webhook_secret="s3cret",
        )
        async with running_daemon(tmp_path, block, listen=f"127.0.0.1:{port}") as runtime:
            refs = [f"w{i}" for i in range(20)]
            sim.publish(*(call(r, pilot="60142", caller="6") for r in refs))
            await until(lambda: len(sim.webhook_log) >= len(refs), timeout=10, interval=0.02)
            pilot = await read_topic(
                runtime.bootstrap, "streamd.o2g.pilot", lambda rs: len(rs) >= 2 + len(refs)
            )

    assert [status for _, status in sim.webhook_log] == [200] * len(refs)  # 2xx only once acked
    calls = created(pilot)
    assert [orjson.loads(r.value)["callRef"] for r in calls] == refs
    assert {r.key for r in calls} == {b"pbx2:60142"}


FIXTURES = Path(__file__).parents[1] / "fixtures" / "o2g" / "events"


async def test_every_catalog_event_reaches_its_topic_with_its_key(tmp_path: Path) -> None:
    """A config naming every package: one instance of every catalog event (the seed's examples),
    published by the simulator, is read back from its package topic with its key and headers."""
    from streamd.sources.o2g.models import EVENTS, PACKAGES

    samples = {}
    for path in sorted(FIXTURES.glob("*.json")):
        event = orjson.loads(path.read_bytes())["event"]
        samples.setdefault(event["eventName"], event)
    assert set(samples) == set(EVENTS)  # the fixtures cover the whole catalog
    async with O2GSimulator(agents=2) as sim:
        block = o2g_source(sim, "pbx1", *PACKAGES, snapshot=False)
        async with running_daemon(tmp_path, block) as runtime:
            for event in samples.values():
                if not sim.publish(event):  # OnServerStart is in no package of the seed's lists:
                    sim.publish_raw(orjson.dumps(event) + b"\n")  # the server sends it to everyone
            expected: dict[str, set[str]] = {}
            for name, spec in EVENTS.items():
                expected.setdefault(spec.package, set()).add(name)
            got: dict[str, list[Any]] = {}
            for package, names in expected.items():
                got[package] = await read_topic(
                    runtime.bootstrap,
                    f"streamd.o2g.{package}",
                    lambda rs, names=names: (
                        {header_dict(r.headers)["ce_type"].rsplit(".", 1)[1] for r in rs} >= names
                    ),
                )
    for name, spec in EVENTS.items():
        # the simulator publishes traffic of its own: find the record of this very sample
        mine = [r for r in got[spec.package] if orjson.loads(r.value) == samples[name]]
        assert mine, f"{name} missing from streamd.o2g.{spec.package}"
        headers = header_dict(mine[0].headers)
        assert headers["ce_type"] == f"o2g.{spec.package}.{name}"
        assert mine[0].key == f"pbx1:{spec.key(samples[name])}".encode()
        assert headers["ce_subject"] == mine[0].key.decode()
        assert headers["ce_source"] == "streamd/pbx1"


def _count(metric: str, source: str) -> float:
    from streamd.telemetry import REGISTRY

    return sum(
        s.value
        for m in REGISTRY.collect()
        for s in m.samples
        if s.name == metric and s.labels.get("source") == source
    )


async def test_deviating_traffic_is_published_whole_and_says_where_it_deviated(tmp_path: Path) -> None:
    """A quarter of the simulator's realistic traffic deviates from the O2G guide (missing fields,
    numbers as strings, unknown fields, null objects...): every event still reaches its topic,
    none is a dead letter, and each deviating record lists its paths in ``streamd_deviations``."""
    from streamd.sources.o2g.models import EVENTS

    dead_before = _count("streamd_events_deadlettered_total", "pbxdev")
    async with O2GSimulator(agents=6, deviate=0.25, seed=7) as sim:
        block = o2g_source(sim, "pbxdev", "agent", "pilot", "telephony", snapshot=False)
        async with running_daemon(tmp_path, block) as runtime:
            produced = sim.generate(400)
            expected: dict[str, int] = {}
            for event in produced:
                topic = f"streamd.o2g.{EVENTS[event['eventName']].package}"
                expected[topic] = expected.get(topic, 0) + 1
            got: list[Any] = []
            for topic, n in expected.items():
                got += await read_topic(runtime.bootstrap, topic, lambda rs, n=n: len(rs) >= n)
            deviations = _count("streamd_deviations_total", "pbxdev")

    assert sum(expected.values()) == len(got)  # nothing missing, nothing extra
    listed = [
        orjson.loads(header_dict(r.headers)["streamd_deviations"])
        for r in got
        if "streamd_deviations" in header_dict(r.headers)
    ]
    assert len(sim.deviated) >= 50
    assert len(listed) == len(sim.deviated) == deviations
    flat = {path for paths in listed for path in paths}
    assert set(sim.deviated) <= flat | {
        p.rsplit(".", 1)[0] for p in flat
    }  # a dropped key: its path or its parent's
    assert _count("streamd_events_deadlettered_total", "pbxdev") == dead_before
