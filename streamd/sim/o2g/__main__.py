"""``python -m streamd.sim.o2g [--port N] [--agents N] [--rate EV_PER_S] ...``: serve until Ctrl-C."""

from __future__ import annotations

import argparse

from streamd.sim import cli
from streamd.sim.o2g.simulator import serve_forever


def parser() -> argparse.ArgumentParser:
    """The command line options."""
    options = cli.parser(
        "o2g",
        "A simulated ALE OmniPCX Open Gateway (O2G) on loopback: sessions, subscriptions, "
        "chunk channels and webhooks, agent / call / pilot traffic.",
        port=8091,
        agents=20,
        deviates="events",
    )
    options.add_argument("--rate", type=float, default=5.0, help="events generated per second (0: none)")
    options.add_argument(
        "--events-per-chunk", type=int, default=512, help="at most this many events per chunk"
    )
    options.add_argument(
        "--stamp", default=None, help="add this field (time.time_ns() when queued) to events"
    )
    return options


def main(argv: list[str] | None = None) -> None:
    """Parse ``argv`` and serve until interrupted."""
    args = parser().parse_args(argv)
    cli.serve_until_interrupted(
        lambda: serve_forever(
            host=args.host,
            port=args.port,
            agents=args.agents,
            rate=args.rate,
            events_per_chunk=args.events_per_chunk,
            stamp=args.stamp,
            deviate=args.deviate,
        ),
        log=True,
    )


if __name__ == "__main__":
    main()
