"""Several replicas (docs/architecture.md "Several replicas"): three ``streamd run`` processes, one
embedded broker, three O2G simulators (one source each) and a Calabrio simulator (source ``wfm``).

- The sources spread over the three replicas; SIGKILL the owner of one under traffic: another
  replica owns it within 20 s and its events reach Kafka again. The same replica owned ``wfm``
  (round-robin: partitions 0 and 3 go to the same member): its new owner resumes the activity
  window from the cursor in the state topic, so every activity — before the kill, in the gap,
  after the takeover — is on Kafka exactly once.
- Rolling restart of the three replicas, one at a time (SIGTERM, start again), under traffic: from
  the simulators' request logs, never two O2G subscriptions alive at once, and the Calabrio
  sessions' spans of use never overlap.
- At no moment do two replicas read the same O2G source: every simulator has at most one
  subscription with a channel being read (sampled all along), and its request log shows no second
  subscription created while an earlier one was being read.
- A replica cut from Kafka (its own :class:`FaultProxy`, the others reach the broker directly)
  stops its source — it deletes the O2G subscription — before another replica subscribes.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import anyio.from_thread
import httpx
import pytest

from streamd.embedded import EmbeddedBroker, free_port
from streamd.sim.calabrio import CalabrioSimulator
from streamd.sim.o2g import O2GSimulator
from streamd.sim.script import LoggedRequest
from tests.e2e.daemon import Daemon
from tests.faults.proxy import FaultProxy
from tests.kafka_helpers import read_back

REDIRECT = Path(__file__).parent / "redirect"
NAMES = ("o2g-a", "o2g-b", "o2g-c")
UNITS = (*NAMES, "wfm")
ACTIVITY_PATH = "/api/rest/scheduling/realTime/activity/detail"


class Replica(Daemon):
    """``streamd run`` with an optional redirect of its broker connections (a proxy of its own)."""

    redirect: str = ""

    def start(self) -> Replica:
        self._log = self.log_path.open("ab")  # a restarted replica appends
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        if self.redirect:
            env["PYTHONPATH"] = os.pathsep.join([str(REDIRECT), env.get("PYTHONPATH", "")])
            env["STREAMD_TEST_REDIRECT"] = self.redirect
        self.process = subprocess.Popen(
            [sys.executable, "-m", "streamd", "--log-format", "text", "run", "-c", str(self.config)],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        return self

    def owns(self) -> set[str]:
        """The sources this replica runs, from ``/readyz`` (empty when it does not answer)."""
        try:
            components = httpx.get(self.url("/readyz"), timeout=1).json()["components"]
        except (httpx.HTTPError, ValueError, KeyError):
            return set()
        return {name for name, c in components.items() if c["kind"] == "source"}

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None


@dataclass
class Watch:
    """Samples every simulator's subscriptions being read, in a thread, until closed."""

    sims: dict[str, O2GSimulator]
    worst: dict[str, int] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            for name, sim in self.sims.items():
                read = sum(
                    1 for s in list(sim.sessions.values()) for sub in list(s.subs.values()) if sub.reader
                )
                self.worst[name] = max(self.worst.get(name, 0), read)
            time.sleep(0.01)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)


def until(condition: Callable[[], bool], timeout: float, what: str, logs: Callable[[], str] = str) -> None:
    end = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > end:
            raise AssertionError(f"no {what} within {timeout}s\n{logs()}")
        time.sleep(0.1)


@contextmanager
def cluster(
    tmp_path: Path, *, redirect_first: bool = False
) -> Iterator[tuple[list[Replica], dict[str, O2GSimulator], str, FaultProxy | None]]:
    """Broker, simulators and three replicas; the first one behind its own proxy if asked. The
    Calabrio simulator is ``CALABRIO[tmp_path]``."""
    with ExitStack() as stack:
        portal = stack.enter_context(anyio.from_thread.start_blocking_portal())
        broker = EmbeddedBroker()
        bootstrap = portal.call(broker.__aenter__)
        stack.callback(portal.call, broker.__aexit__, None, None, None)
        sims: dict[str, O2GSimulator] = {}
        for name in NAMES:
            sim = O2GSimulator(agents=5, rate=20.0, seed=None)
            sims[name] = stack.enter_context(portal.wrap_async_context_manager(sim))
        wfm = stack.enter_context(portal.wrap_async_context_manager(CalabrioSimulator(agents=3)))
        CALABRIO[tmp_path] = wfm
        stack.callback(CALABRIO.pop, tmp_path, None)
        proxy: FaultProxy | None = None
        if redirect_first:
            proxy = FaultProxy(free_port(), broker.port).start()
            stack.callback(proxy.close)
        replicas: list[Replica] = []
        for i in range(3):
            workdir = tmp_path / f"r{i}"
            workdir.mkdir()
            port = free_port()
            sources = [sim.source_config(name) for name, sim in sims.items()]
            sources.append(
                {
                    "kind": "calabrio",
                    "name": "wfm",
                    "url": wfm.url,
                    "username": wfm.username,
                    "password": wfm.password,
                    "interval": "300ms",
                    "timeout": "250ms",
                    "overlap": "5s",
                }
            )
            config = workdir / "streamd.yaml"
            config.write_text(
                f"kafka: {{bootstrap_servers: '{bootstrap}', topic_prefix: 'c.', idempotence: false}}\n"
                f"http: {{listen: '127.0.0.1:{port}'}}\n"
                f"spool: {{path: '{workdir / 'spool.db'}'}}\n"
                "cluster: {enabled: true, group_id: streamd-test, session_timeout: 10s}\n"
                "shutdown_grace: 3s\n"
                f"sources: {json.dumps(sources)}\n"
            )
            replica = Replica(config, port, workdir / "daemon.log")
            if proxy is not None and i == 0:
                replica.redirect = f"{broker.port}:{proxy.port}"
            replicas.append(replica.start())
            stack.callback(replica.kill)
        yield replicas, sims, bootstrap, proxy


CALABRIO: dict[Path, CalabrioSimulator] = {}


def logs(replicas: list[Replica]) -> Callable[[], str]:
    return lambda: "\n".join(f"--- replica {i}\n{r.log()}" for i, r in enumerate(replicas))


def spread(replicas: list[Replica]) -> bool:
    owned = [r.owns() for r in replicas if r.alive()]
    every = [n for o in owned for n in o]
    return sorted(every) == sorted(UNITS) and all(owned)


def owner(replicas: list[Replica], name: str) -> Replica | None:
    found = [r for r in replicas if r.alive() and name in r.owns()]
    return found[0] if len(found) == 1 else None


def add_activities(sim: CalabrioSimulator, state: str) -> list[tuple[str, str, int]]:
    """Every agent enters ``state`` now; what the vendor topic must then hold once each."""
    now = sim.clock_ms()
    added = []
    for agent in sim.agent_list:
        sim.add_activity(agent.agent_id, now, state)
        added.append((str(agent.agent_id), state, now))
    return added


def calabrio_activities(bootstrap: str, expected: int, timeout: float = 2) -> list[tuple[str, str, int]]:
    """``(agentId, agentState, timestamp)`` of every activity on the vendor topic (snapshots left out)."""
    records = read_back(bootstrap, "c.calabrio.agent-state", expected, timeout=timeout)
    out = []
    for r in records:
        if r.headers.get("streamd_snapshot") == "true":
            continue
        value = json.loads(r.value)
        out.append((str(value["agentId"]), str(value["agentState"]), int(value["timestamp"])))
    return out


def never_two_subscriptions(requests: list[LoggedRequest]) -> bool:
    """From an O2G simulator's request log: a subscription is created only once the previous one
    was deleted (created minus deleted never above one)."""
    alive = 0
    for r in requests:
        if r.status >= 300:
            continue
        if r.method == "POST" and r.path.endswith("/subscriptions"):
            alive += 1
        elif r.method == "DELETE" and "/subscriptions/" in r.path:
            alive -= 1
        if alive > 1:
            return False
    return True


def session_spans(sim: CalabrioSimulator) -> list[tuple[float, float, str]]:
    """``(first use, last use, session)`` of every Calabrio session, from the request log."""
    spans: dict[str, list[float]] = {}
    for r in sim.requests:
        session = sim.session_of(r)
        if session:
            span = spans.setdefault(session, [r.at, r.at])
            span[0], span[1] = min(span[0], r.at), max(span[1], r.at)
    return sorted((a, b, s) for s, (a, b) in spans.items())


@pytest.mark.kafka
def test_sigkill_of_an_owner_moves_its_source_and_no_source_ever_runs_twice(tmp_path: Path) -> None:
    with cluster(tmp_path) as (replicas, sims, bootstrap, _):
        watch = Watch(sims)
        try:
            until(lambda: spread(replicas), 60, "sources spread over the three replicas", logs(replicas))
            victim = owner(replicas, "o2g-a")
            assert victim is not None
            assert "wfm" in victim.owns()  # round-robin: partitions 0 and 3, the same member
            wfm = CALABRIO[tmp_path]
            expected: list[tuple[str, str, int]] = []
            until(lambda: len(wfm.calls(ACTIVITY_PATH)) >= 3, 20, "wfm polling", logs(replicas))
            expected += add_activities(wfm, "TALK")  # read by the victim, cursor moves past them
            until(
                lambda: len(calabrio_activities(bootstrap, len(expected))) >= len(expected),
                20,
                "the first activities on Kafka",
                logs(replicas),
            )
            polled = len(wfm.calls(ACTIVITY_PATH))  # a few more cycles: the cursor reaches the state topic
            until(lambda: len(wfm.calls(ACTIVITY_PATH)) >= polled + 5, 20, "more wfm polls")
            sim = sims["o2g-a"]
            until(lambda: sim.published > 0 and bool(sim.subscriptions()), 20, "traffic")
            before = len(read_back(bootstrap, "c.o2g.agent", 1, timeout=20))
            assert before > 0
            assert victim.process is not None
            victim.process.kill()
            victim.process.wait()
            killed_at = time.monotonic()
            expected += add_activities(wfm, "WORK_AFTER_CONTACT")  # in the gap: nobody reads wfm
            found: list[Replica] = []

            def taken_over() -> bool:  # remembered: an eager rebalance may follow at once
                new = owner(replicas, "o2g-a")
                if new is not None:
                    found.append(new)
                return new is not None

            until(taken_over, 20, "new owner of o2g-a", logs(replicas))
            assert time.monotonic() - killed_at < 20
            assert found[0] is not victim
            # events flow again: the new owner's subscription delivers records after the takeover
            published_then = sim.published
            until(lambda: sim.published > published_then + 20, 20, "more O2G traffic")
            until(
                lambda: len(read_back(bootstrap, "c.o2g.agent", before + 1, timeout=2)) > before,
                30,
                "events from the new owner on Kafka",
                logs(replicas),
            )
            # every source runs again, each on exactly one of the two replicas left
            until(lambda: spread(replicas), 20, "sources spread over the two replicas left", logs(replicas))
            # Calabrio: the new owner resumed the window from the cursor in Kafka
            expected += add_activities(wfm, "READY_WAITING")
            until(
                lambda: len(calabrio_activities(bootstrap, len(expected))) >= len(expected),
                30,
                "every activity on Kafka",
                logs(replicas),
            )
            polled = len(wfm.calls(ACTIVITY_PATH))  # overlapping windows read again: nothing repeated
            until(lambda: len(wfm.calls(ACTIVITY_PATH)) >= polled + 10, 20, "more wfm polls")
            published = calabrio_activities(bootstrap, len(expected) + 1, timeout=3)
            assert sorted(published) == sorted(expected)  # none missing, none repeated
        finally:
            watch.close()
        assert all(w <= 1 for w in watch.worst.values()), watch.worst
        created = [r for r in sim.requests if r.method == "POST" and r.path.endswith("/subscriptions")]
        assert len(created) >= 2  # the victim's and the new owner's


@pytest.mark.kafka
def test_a_replica_cut_from_kafka_stops_its_source_before_another_starts_it(tmp_path: Path) -> None:
    with cluster(tmp_path, redirect_first=True) as (replicas, sims, _, proxy):
        assert proxy is not None
        watch = Watch(sims)
        try:
            until(lambda: spread(replicas), 60, "sources spread over the three replicas", logs(replicas))
            cut = replicas[0]
            name = min(n for n in cut.owns() if n in NAMES)  # an O2G source (wfm may be there too)
            sim = sims[name]
            first = sim.subscriptions()
            assert len(first) == 1
            mark = len(sim.requests)
            proxy.mode = "blackhole"
            until(
                lambda: owner(replicas[1:], name) is not None,
                40,
                f"another replica owning {name}",
                logs(replicas),
            )
            assert cut.alive()
            until(
                lambda: any(
                    r.method == "POST" and r.path.endswith("/subscriptions") for r in sim.requests[mark:]
                ),
                20,
                f"the new owner of {name} subscribing",
                logs(replicas),
            )
            log = [r for r in sim.requests[mark:] if "/subscriptions" in r.path]
            deleted = [i for i, r in enumerate(log) if r.method == "DELETE" and r.path.endswith(first[0])]
            created = [i for i, r in enumerate(log) if r.method == "POST"]
            assert deleted, log
            assert created, log
            assert deleted[0] < created[0], log  # stopped before the new owner subscribed
            assert "fenced" in cut.log_path.read_text()
        finally:
            watch.close()
        assert all(w <= 1 for w in watch.worst.values()), watch.worst


@pytest.mark.kafka
def test_a_rolling_restart_never_runs_a_source_on_two_replicas(tmp_path: Path) -> None:
    with cluster(tmp_path) as (replicas, sims, _, _):
        wfm = CALABRIO[tmp_path]
        watch = Watch(sims)
        try:
            until(lambda: spread(replicas), 60, "sources spread over the three replicas", logs(replicas))
            for replica in replicas:  # one at a time, under the O2G simulators' traffic
                published = {name: sim.published for name, sim in sims.items()}
                assert replica.terminate(20) == 0, replica.log()
                until(lambda: spread(replicas), 30, "the two others running every source", logs(replicas))
                replica.start()
                until(lambda: spread(replicas), 60, "every replica owning a share again", logs(replicas))
                until(
                    lambda published=published: all(sim.published > published[n] for n, sim in sims.items()),  # type: ignore[misc]
                    20,
                    "traffic after the restart",
                )
            logins = {s for _, _, s in session_spans(wfm)}
            assert len(logins) >= 2  # wfm moved at least once
        finally:
            watch.close()
        assert all(w <= 1 for w in watch.worst.values()), watch.worst
        for name, sim in sims.items():
            assert never_two_subscriptions(sim.requests), (name, [(r.method, r.path) for r in sim.requests])
        spans = session_spans(wfm)
        for (_, end, first), (start, _, second) in itertools.pairwise(spans):
            assert end <= start, f"Calabrio sessions {first} and {second} were used at the same time"
