"""config/demo.yaml is what ``streamd demo`` runs, and its "run it piece by piece" steps work
(issue 22 item 11): every documented simulator command answers ``--help`` and serves on ``--port N``,
and ``streamd run -c config/demo.yaml`` against them gets every source and the sink running."""

from __future__ import annotations

import re
import shlex
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import AsyncExitStack, ExitStack, contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest
import yaml

from streamd.demo import demo_config, demo_simulators
from streamd.embedded import free_port
from tests.e2e.daemon import Daemon
from tests.faults.daemon_helpers import exit_code, wait_for

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "config" / "demo.yaml"
STEP = re.compile(r"^(python -m (streamd\.sim\.\w+) .*?)\s*&?\s*$")


def steps() -> list[tuple[str, list[str]]]:
    """``(module, argv)`` of every documented simulator command, in the file's order (a line
    ending in a backslash goes on in the next comment line)."""
    found, pending = [], ""
    for line in DEMO.read_text(encoding="utf-8").splitlines():
        if not line.startswith("#"):
            continue
        text = pending + line.removeprefix("#").strip()
        if text.endswith("\\"):
            pending = text.removesuffix("\\").strip() + " "
            continue
        pending = ""
        if match := STEP.match(text):
            found.append((match.group(2), shlex.split(match.group(1))[3:]))
    return found


def option(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


def url_fields(block: dict[str, Any]) -> list[str]:
    return [key for key in block if key == "url" or key.endswith("_url")]


def with_port(url: str, port: int) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=f"{parts.hostname}:{port}"))


def demo_file() -> dict[str, Any]:
    data = yaml.safe_load(DEMO.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


@pytest.mark.anyio
async def test_demo_yaml_is_what_streamd_demo_runs() -> None:
    """The same sections, names, sink and settings; only the simulators' ports and the spool differ."""
    documented = demo_file()
    async with AsyncExitStack() as stack:
        sources = [await stack.enter_async_context(simulator(20)) for simulator in demo_simulators()]
        ran = demo_config(sources, host="127.0.0.1", port=8080, spool=Path("spool.db"))
    ran = yaml.safe_load(yaml.safe_dump(ran))  # plain data, as the file reads
    ran["spool"] = documented["spool"]  # the demo's is in a temporary directory
    # The demo's simulators listen on free ports; the file pins them. Put the file's ports in.
    port_of = {block["name"]: urlsplit(block[url_fields(block)[0]]).port for block in documented["sources"]}
    demo_ports: dict[int | None, int | None] = {}
    for block in ran["sources"]:
        assert block["name"] in port_of, f"the demo runs {block['name']}, config/demo.yaml does not have it"
        for key in url_fields(block):
            demo_ports[urlsplit(block[key]).port] = port_of[block["name"]]
            block[key] = with_port(block[key], port_of[block["name"]] or 0)
    for block in ran["sinks"]:
        for key in url_fields(block):
            block[key] = with_port(block[key], demo_ports[urlsplit(block[key]).port] or 0)
    assert [s["name"] for s in documented["sources"]] == [s["name"] for s in ran["sources"]]
    for section in ("sources", "sinks"):
        for in_file, in_demo in zip(documented[section], ran[section], strict=True):
            assert in_file == in_demo, f"config/demo.yaml {section} {in_file.get('name')}: " + str(
                {
                    k: (in_file.get(k), in_demo.get(k))
                    for k in in_file | in_demo
                    if in_file.get(k) != in_demo.get(k)
                }
            )  # (file, demo)
    assert documented == ran


def test_every_simulator_has_a_documented_step_on_the_port_its_source_uses() -> None:
    documented = demo_file()
    vendors = {module.rsplit(".", 1)[1]: int(option(argv, "--port")) for module, argv in steps()}
    assert set(vendors) == {block["kind"] for block in documented["sources"]}
    for block in documented["sources"]:
        for key in url_fields(block):
            assert urlsplit(block[key]).port == vendors[block["kind"]], (block["name"], key)
    assert "streamd --log-format text run -c config/demo.yaml" in DEMO.read_text(encoding="utf-8")


@pytest.mark.parametrize("module", [module for module, _ in steps()])
def test_each_documented_simulator_answers_help(module: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", module, "--help"], capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert done.returncode == 0, done.stderr
    assert f"python -m {module}" in done.stdout  # the usage line names the command as documented
    for _, argv in [s for s in steps() if s[0] == module]:
        for name in (a for a in argv if a.startswith("--")):
            assert name in done.stdout, f"{module} --help does not list {name}, which the file uses"


@contextmanager
def documented_simulators(http: int) -> Iterator[dict[int, int]]:
    """Every documented step on a free port instead of its pinned one (and the daemon's HTTP port
    ``http`` for 8080, where a simulator pushes to it): yields {pinned port: port used}."""
    ports = {8080: http} | {int(option(argv, "--port")): free_port() for _, argv in steps()}

    def moved(arg: str) -> str:
        if arg.isdigit() and int(arg) in ports:
            return str(ports[int(arg)])
        for pinned, port in ports.items():
            arg = arg.replace(f"127.0.0.1:{pinned}", f"127.0.0.1:{port}")
        return arg

    with ExitStack() as stack:
        for module, documented in steps():
            argv = [moved(arg) for arg in documented]
            port = int(option(argv, "--port"))
            process = subprocess.Popen(
                [sys.executable, "-m", module, *argv],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                cwd=ROOT,
            )
            stack.callback(process.wait, 10)
            stack.callback(process.send_signal, signal.SIGINT)

            def serving(
                process: subprocess.Popen[bytes] = process, port: int = port, what: str = f"{module} {argv}"
            ) -> bool:
                if process.poll() is not None:
                    raise AssertionError(f"{what} exited {process.returncode}")
                try:
                    httpx.get(f"http://127.0.0.1:{port}/", timeout=1)
                except httpx.TransportError:
                    return False
                return True  # any HTTP answer: it serves on the port it was given

            wait_for(serving, 30, f"{module} on --port {port}")
        yield ports


@pytest.mark.kafka
def test_the_piece_by_piece_steps_run(tmp_path: Path) -> None:
    """The documented commands, then ``streamd run -c`` on the file: every source and the sink run."""
    http = free_port()
    with documented_simulators(http) as ports:
        text = DEMO.read_text(encoding="utf-8")
        for pinned, port in ports.items():
            text = text.replace(f"127.0.0.1:{pinned}", f"127.0.0.1:{port}")
        text = text.replace("./streamd-demo-spool.db", str(tmp_path / "spool.db"))
        config = tmp_path / "demo.yaml"
        config.write_text(text, encoding="utf-8")
        daemon = Daemon(config, http, tmp_path / "daemon.log").start()
        try:
            daemon.wait_ready(timeout=60)
            expected = [s["name"] for s in demo_file()["sources"]] + ["calabrio-rtdc-o2g-sim"]

            def components() -> dict[str, Any]:
                return dict(httpx.get(daemon.url("/readyz"), timeout=2).json()["components"])

            wait_for(
                lambda: all(components().get(name, {}).get("state") == "running" for name in expected),
                60,
                "every source and the sink running",
                daemon,
            )
            assert daemon.process is not None
            daemon.process.send_signal(signal.SIGTERM)
            code = exit_code(daemon, within=30)
        finally:
            daemon.kill()
    assert code == 0, daemon.log()
    assert "Traceback" not in daemon.log()
