"""``python -m streamd.sim.o2g [--port N] [--agents N] [--rate EV_PER_S] ...``: serve until Ctrl-C."""

from __future__ import annotations

import argparse
import contextlib
import logging

import anyio

from streamd.sim.o2g.simulator import serve_forever


def parser() -> argparse.ArgumentParser:
    """The command line options."""
    options = argparse.ArgumentParser(
        prog="python -m streamd.sim.o2g",
        description="A simulated ALE OmniPCX Open Gateway (O2G) on loopback: sessions, subscriptions, "
        "chunk channels and webhooks, agent / call / pilot traffic.",
    )
    options.add_argument("--host", default="127.0.0.1", help="interface to listen on")
    options.add_argument("--port", type=int, default=8091, help="TCP port (0: any free one)")
    options.add_argument("--agents", type=int, default=20, help="how many agents the PBX has")
    options.add_argument("--rate", type=float, default=5.0, help="events generated per second (0: none)")
    options.add_argument(
        "--events-per-chunk", type=int, default=512, help="at most this many events per chunk"
    )
    options.add_argument(
        "--stamp", default=None, help="add this field (time.time_ns() when queued) to events"
    )
    options.add_argument(
        "--deviate", type=float, default=0.0, help="share of events deviating from the guide"
    )
    return options


def main(argv: list[str] | None = None) -> None:
    """Parse ``argv`` and serve until interrupted."""
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    with contextlib.suppress(KeyboardInterrupt):
        anyio.run(
            lambda: serve_forever(
                host=args.host,
                port=args.port,
                agents=args.agents,
                rate=args.rate,
                events_per_chunk=args.events_per_chunk,
                stamp=args.stamp,
                deviate=args.deviate,
            )
        )


if __name__ == "__main__":
    main()
