"""``python -m streamd.sim.xima --help`` lists the simulator's options (issue 14 item 5)."""

from __future__ import annotations

import subprocess
import sys


def test_help_prints_the_options() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "streamd.sim.xima", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    for option in ("--port", "--agents", "--tick", "--api-key", "--deviate", "--group-metrics", "--webhook"):
        assert option in done.stdout
