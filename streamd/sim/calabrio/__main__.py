"""``python -m streamd.sim.calabrio``: serve a self-changing Calabrio ONE simulator until Ctrl-C."""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Sequence
from functools import partial

import anyio

from streamd.sim.calabrio import CalabrioSimulator, serve_forever


def parse(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line (``--help`` lists the options)."""
    parser = argparse.ArgumentParser(
        prog="python -m streamd.sim.calabrio",
        description="Serve a Calabrio ONE simulator (agents change state on their own) until interrupted.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="TCP port (default 0: any free port)")
    parser.add_argument("--agents", type=int, default=20, help="number of agents (default 20)")
    parser.add_argument("--username", default="api@example.com", help="the API user's name")
    parser.add_argument("--password", default="secret", help="the API user's password")
    parser.add_argument(
        "--max-late-ms",
        type=int,
        default=3_000,
        help="most milliseconds an activity shows up late (default 3000)",
    )
    parser.add_argument(
        "--deviate", type=float, default=0.0, help="share 0-1 of the payloads that deviate from the guide"
    )
    return parser.parse_args(argv)


def announce(sim: CalabrioSimulator) -> None:
    """Print where the simulator listens and how to log in."""
    print(f"calabrio simulator on {sim.url} (user {sim.username}, {len(sim.agent_list)} agents)", flush=True)


def main(argv: Sequence[str] | None = None) -> None:
    """Parse the options and serve until interrupted."""
    args = parse(argv)
    run = partial(
        serve_forever,
        host=args.host,
        port=args.port,
        agents=args.agents,
        username=args.username,
        password=args.password,
        max_late_ms=args.max_late_ms,
        deviate=args.deviate,
        on_ready=announce,
    )
    with contextlib.suppress(KeyboardInterrupt):
        anyio.run(run)


if __name__ == "__main__":
    main()
