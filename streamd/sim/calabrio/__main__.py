"""``python -m streamd.sim.calabrio``: serve a self-changing Calabrio ONE simulator until Ctrl-C."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from functools import partial

from streamd.sim import cli
from streamd.sim.calabrio import CalabrioSimulator, serve_forever


def parse(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line (``--help`` lists the options)."""
    parser = cli.parser(
        "calabrio",
        "Serve a Calabrio ONE simulator (agents change state on their own) until interrupted.",
        port=0,
        agents=20,
        deviates="payloads",
    )
    parser.add_argument("--username", default="api@example.com", help="the API user's name")
    parser.add_argument("--password", default="secret", help="the API user's password")
    parser.add_argument(
        "--max-late-ms",
        type=int,
        default=3_000,
        help="most milliseconds an activity shows up late (default 3000)",
    )
    return parser.parse_args(argv)


def announce(sim: CalabrioSimulator) -> None:
    """Print where the simulator listens and how to log in."""
    print(f"calabrio simulator on {sim.url} (user {sim.username}, {len(sim.agent_list)} agents)", flush=True)


def main(argv: Sequence[str] | None = None) -> None:
    """Parse the options and serve until interrupted."""
    args = parse(argv)
    cli.serve_until_interrupted(
        partial(
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
    )


if __name__ == "__main__":
    main()
