"""``python -m streamd.sim.calabrio``: ``--help`` lists the options and the simulator serves (issue 14 item 5)."""

from __future__ import annotations

import subprocess
import sys

import httpx


def test_help_prints_the_options() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "streamd.sim.calabrio", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    for option in ("--host", "--port", "--agents", "--username", "--password", "--max-late-ms", "--deviate"):
        assert option in done.stdout


def test_it_serves_until_stopped() -> None:
    command = [sys.executable, "-m", "streamd.sim.calabrio", "--port", "0", "--agents", "3"]
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as proc:
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            assert line.startswith("calabrio simulator on http://127.0.0.1:"), line
            url = line.split()[3]
            credentials = {"username": "api@example.com", "password": "secret"}
            login = httpx.post(f"{url}/api/rest/authorize", json=credentials)
            assert login.status_code == 200
            agents = httpx.get(f"{url}/api/rest/scheduling/agent", cookies=login.cookies)
            assert [a["agentId"] for a in agents.json()] == [101, 102, 103]
        finally:
            proc.terminate()
            proc.wait(timeout=30)
