"""``python -m streamd.sim.alvaria``: serve the Alvaria simulator and print its source's config block."""

from __future__ import annotations

import argparse

import anyio
import orjson

from streamd.sim import cli
from streamd.sim.alvaria.simulator import AlvariaSimulator


def parser() -> argparse.ArgumentParser:
    """The command line (``--help`` lists it)."""
    p = cli.parser(
        "alvaria",
        "Alvaria Cloud reporting simulator: serves the token endpoint, the five real-time "
        "queries and the scope lists, and prints the kind: alvaria config block for it.",
        port=9103,
        agents=20,
        deviates="rows",
    )
    p.add_argument("--teams", type=int, default=2, help="teams (default 2)")
    p.add_argument("--work-types", type=int, default=2, help="worktypes (default 2)")
    p.add_argument("--token-ttl", type=float, default=300.0, help="expires_in of issued tokens, seconds")
    p.add_argument("--seed", type=int, default=1, help="seeds the world and the deviations")
    return p


async def serve(args: argparse.Namespace) -> None:  # pragma: no cover - manual use
    """Serve until interrupted."""
    sim = AlvariaSimulator(
        agents=args.agents,
        teams=args.teams,
        work_types=args.work_types,
        token_ttl=args.token_ttl,
        deviate=args.deviate,
        seed=args.seed,
        host=args.host,
        port=args.port,
    )
    async with sim:
        print(orjson.dumps(sim.source_config(), option=orjson.OPT_INDENT_2).decode(), flush=True)
        await anyio.sleep_forever()


def main(argv: list[str] | None = None) -> None:
    """Parse ``argv`` and serve."""
    args = parser().parse_args(argv)
    cli.serve_until_interrupted(lambda: serve(args))


if __name__ == "__main__":  # pragma: no cover
    main()
