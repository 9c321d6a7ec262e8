"""What every ``python -m streamd.sim.<vendor>`` command shares: its common options and serving
until Ctrl-C.

Rules:

1. :func:`parser` builds a vendor's command line with the options every simulator has
   (``--host``, ``--port``, ``--agents``, ``--deviate``), each with the vendor's default; the
   vendor's ``__main__`` adds only its own options to it.
2. :func:`serve_until_interrupted` runs one coroutine until it returns or Ctrl-C ends it
   quietly (no traceback for a manual run's normal end).
3. Like every simulator module, this imports nothing from the product.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
from collections.abc import Awaitable, Callable

import anyio


def parser(
    vendor: str, description: str, *, port: int, agents: int, deviates: str
) -> argparse.ArgumentParser:
    """The command line of ``python -m streamd.sim.<vendor>`` with the options every simulator has.

    Args:
        vendor: the package's name under ``streamd.sim`` (the usage line names the command).
        description: what the simulator serves.
        port: the default TCP port (the one config/demo.yaml pins).
        agents: the default number of simulated agents.
        deviates: what ``--deviate`` is a share of (``"rows"``, ``"events"``...).
    """
    options = argparse.ArgumentParser(prog=f"python -m streamd.sim.{vendor}", description=description)
    options.add_argument("--host", default="127.0.0.1", help="interface to listen on (default %(default)s)")
    options.add_argument(
        "--port", type=int, default=port, help="TCP port (0: any free one; default %(default)s)"
    )
    options.add_argument("--agents", type=int, default=agents, help="simulated agents (default %(default)s)")
    options.add_argument(
        "--deviate",
        type=float,
        default=0.0,
        help=f"share (0..1) of the {deviates} that deviate from the guide (default %(default)s)",
    )
    return options


def serve_until_interrupted(serve: Callable[[], Awaitable[object]], *, log: bool = False) -> None:
    """Run ``serve()`` until it returns or Ctrl-C; ``log``: log at INFO to stderr first."""
    if log:
        logging.basicConfig(level=logging.INFO)
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C ends a manual run quietly
        anyio.run(serve)
