"""Webhooks on any replica, end to end (docs/architecture.md "Several replicas"): two ``streamd run``
replicas, the embedded broker and two O2G simulators delivering by webhook. Both sources' webhook
URL is replica 0's (a Service would pick either replica): the source replica 1 owns gets its POSTs
through replica 0, which checks them against what replica 1 advertised in the state topic and
forwards them; the events reach Kafka and O2G gets its 200s."""

from __future__ import annotations

import json
from contextlib import ExitStack
from pathlib import Path

import anyio.from_thread
import pytest

from streamd.embedded import EmbeddedBroker, free_port
from streamd.sim.o2g import O2GSimulator
from tests.cluster.test_failover import Replica, logs, owner, until
from tests.kafka_helpers import read_back

NAMES = ("pbx-a", "pbx-b")


@pytest.mark.kafka
def test_a_webhook_post_to_a_replica_that_does_not_run_its_source_is_forwarded(tmp_path: Path) -> None:
    with ExitStack() as stack:
        portal = stack.enter_context(anyio.from_thread.start_blocking_portal())
        broker = EmbeddedBroker()
        bootstrap = portal.call(broker.__aenter__)
        stack.callback(portal.call, broker.__aexit__, None, None, None)
        sims = {
            name: stack.enter_context(portal.wrap_async_context_manager(O2GSimulator(agents=3, rate=10.0)))
            for name in NAMES
        }
        ports = [free_port(), free_port()]
        replicas: list[Replica] = []
        for i, port in enumerate(ports):
            workdir = tmp_path / f"r{i}"
            workdir.mkdir()
            sources = [
                sim.source_config(
                    name,
                    delivery="webhook",
                    webhook_public_url=f"http://127.0.0.1:{ports[0]}/webhooks/o2g/{name}",
                )
                for name, sim in sims.items()
            ]
            config = workdir / "streamd.yaml"
            config.write_text(
                f"kafka: {{bootstrap_servers: '{bootstrap}', topic_prefix: 'w.', idempotence: false}}\n"
                f"http: {{listen: '127.0.0.1:{port}'}}\n"
                f"spool: {{path: '{workdir / 'spool.db'}'}}\n"
                "cluster: {enabled: true, group_id: streamd-webhooks, session_timeout: 10s}\n"
                "shutdown_grace: 3s\n"
                f"sources: {json.dumps(sources)}\n"
            )
            replica = Replica(config, port, workdir / "daemon.log")
            replicas.append(replica.start())
            stack.callback(replica.kill)

        def each_runs_one() -> bool:
            return all(len(r.owns()) == 1 for r in replicas) and {
                n for r in replicas for n in r.owns()
            } == set(NAMES)

        until(each_runs_one, 60, "one source on each replica", logs(replicas))
        (remote,) = replicas[1].owns()  # its POSTs reach replica 0, which does not run it
        assert owner(replicas, remote) is replicas[1]
        sim = sims[remote]

        def forwarded_ok() -> bool:
            return any(status == 200 for _, status in sim.webhook_log)

        until(forwarded_ok, 30, f"a 200 from replica 0 for {remote}'s POSTs", logs(replicas))

        def on_kafka() -> bool:
            records = read_back(bootstrap, "w.o2g.agent", 1_000_000, timeout=1)
            return any(r.headers.get("ce_source") == f"streamd/{remote}" for r in records)

        until(on_kafka, 30, f"{remote}'s events on Kafka", logs(replicas))
        assert remote not in replicas[0].owns()
        refused = [status for _, status in sim.webhook_log if status >= 400]
        assert all(status == 503 for status in refused), refused  # never a 4xx: O2G would drop the events
