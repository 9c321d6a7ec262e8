"""Command line: ``streamd run | check-config | schema | demo | tail`` (thin: parse, call, exit).

Exit codes: 0 clean stop (``run``: after SIGTERM, SIGINT or SIGHUP, also during start-up or after a
second signal cut the shutdown grace short); 1 fatal runtime error (one line on stderr, no
traceback); 2 invalid configuration or usage (one line per problem).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

import anyio
import orjson

from streamd.errors import ConfigError, StreamdError

if TYPE_CHECKING:
    from streamd.config import Config

log = logging.getLogger("streamd")

LOG_LEVELS = ["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]


def plural(n: int, word: str) -> str:
    """``1 source``, ``2 sources``."""
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _parser() -> argparse.ArgumentParser:
    from streamd import __version__

    parser = argparse.ArgumentParser(prog="streamd", description="Contact-centre events to Kafka.")
    parser.add_argument("--version", action="version", version=f"streamd {__version__}")
    parser.add_argument(
        "--log-format",
        choices=["json", "text"],
        default="json",
        help="log line format (default: %(default)s; demo and tail always log text)",
    )
    parser.add_argument(
        "--log-level",
        choices=LOG_LEVELS,
        default="INFO",
        type=str.upper,
        help="least severe level logged: %(choices)s (default: %(default)s)",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="run the daemon")
    run.add_argument(
        "-c", "--config", default="/etc/streamd/config.yaml", help="config file (default: %(default)s)"
    )

    check = sub.add_parser("check-config", help="validate a config file (exit 2 when invalid)")
    check.add_argument("-c", "--config", required=True, help="config file to check")
    check.add_argument(
        "--no-env",
        action="store_true",
        help="check ${env:...} and ${file:...} for syntax only, with placeholders in their place "
        "(lint a config without its secrets, e.g. in CI)",
    )

    schema = sub.add_parser("schema", help="print the config JSON Schema")
    schema.add_argument("--events", action="store_true", help="print the JSON Schema of every event type")

    demo = sub.add_parser("demo", help="embedded broker + every simulator + the daemon")
    demo.add_argument(
        "--host",
        default="127.0.0.1",
        help="HTTP address to listen on (default: %(default)s; 0.0.0.0 to reach the demo from "
        "another machine, e.g. on a remote VM)",
    )
    demo.add_argument(
        "--port", type=int, default=8080, help="HTTP port (default: %(default)s; 0 = any free port)"
    )
    demo.add_argument("--agents", type=int, default=20, help="agents per simulator (default: %(default)s)")
    demo.add_argument(
        "--replicas",
        type=int,
        default=1,
        help="run this many daemons sharing the sources as a cluster, on ports PORT, PORT+1, ... "
        "(default: %(default)s; each replica's /readyz and wallboard show what it runs)",
    )
    demo.add_argument(
        "--duration",
        type=float,
        default=None,
        help="stop after this many seconds (default: run until Ctrl-C)",
    )

    tail = sub.add_parser("tail", help="pretty-print events from a topic")
    tail.add_argument(
        "topic", help="topic name, e.g. agent-state (kafka.topic_prefix is added unless already there)"
    )
    tail.add_argument("-c", "--config", default=None, help="config file (for bootstrap and security)")
    tail.add_argument("--bootstrap", default=None, help="host:port (overrides the config)")
    tail.add_argument(
        "--from-beginning", action="store_true", help="start at the oldest record, not the newest"
    )
    tail.add_argument("--key", default=None, help="only records with this key")
    tail.add_argument("--type", dest="ce_type", default=None, help="only records with this ce_type header")
    tail.add_argument("--limit", type=int, default=None, help="stop after N events")
    tail.add_argument("--timeout", type=float, default=None, help="stop after N idle seconds")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``streamd`` console script."""
    args = _parser().parse_args(argv)
    from streamd.logs import setup_logging

    text = args.log_format == "text" or args.command in ("demo", "tail")
    setup_logging("text" if text else "json", args.log_level)
    try:
        return _dispatch(args)
    except ConfigError as exc:
        for line in exc.problems:
            print(line, file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except StreamdError as exc:  # the daemon raises the error itself, never a group of them
        print(f"streamd: fatal: {exc}", file=sys.stderr)
        return 1


def _dispatch(args: argparse.Namespace) -> int:
    from streamd.config import load_config

    if args.command == "check-config":
        cfg = load_config(args.config, no_env=args.no_env)
        _require_explicit_kafka(cfg, args.config)
        if cfg.kafka.acks_warning:
            print(f"{args.config}: warning: {cfg.kafka.acks_warning}", file=sys.stderr)
        counts = f"{plural(len(cfg.sources), 'source')}, {plural(len(cfg.sinks), 'sink')}"
        print(f"{args.config}: ok ({counts}{', substitutions not resolved' if args.no_env else ''})")
        return 0
    if args.command == "schema":
        from streamd.schemas import config_schema, events_schema

        doc = events_schema() if args.events else config_schema()
        sys.stdout.write(orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode() + "\n")
        return 0
    if args.command == "run":
        return _run(args.config)
    if args.command == "demo":
        from streamd.app import tune_gc
        from streamd.demo import run_demo

        tune_gc()
        anyio.run(
            lambda: run_demo(
                host=args.host,
                port=args.port,
                agents=args.agents,
                duration=args.duration,
                replicas=args.replicas,
            )
        )
        return 0
    from streamd.tail import run_tail

    anyio.run(lambda: run_tail(args))
    return 0


def _run(path: str) -> int:
    """``streamd run``: a stop signal from here on is a clean stop, exit 0 (lifecycle rule 2)."""
    import signal

    from streamd.runtime import catch_early_signals

    with catch_early_signals() as early:
        from streamd.app import run_daemon, tune_gc
        from streamd.config import load_config

        cfg = load_config(path)
        _require_explicit_kafka(cfg, path)
        if early:
            log.info("received %s before the start: not starting", signal.Signals(early[0]).name)
            return 0
        tune_gc()
        anyio.run(lambda: run_daemon(cfg))
    return 0


def _require_explicit_kafka(cfg: Config, path: str) -> None:
    """``run`` never falls back to the embedded test broker: the file must name the brokers.

    Raises:
        ConfigError: ``kafka.bootstrap_servers`` is not in the file.
    """
    if "bootstrap_servers" not in cfg.kafka.model_fields_set:
        raise ConfigError(
            [
                f"{path}: kafka.bootstrap_servers: required: the Kafka brokers as host:port,host:port "
                '("embedded" starts a throw-away test broker: for trying streamd out only)'
            ]
        )


if __name__ == "__main__":
    sys.exit(main())
