"""``python -m streamd.sim.xima [--port N] [--agents N] [--tick S] [--webhook URL] ...``: serve until Ctrl-C."""

from __future__ import annotations

import argparse

from streamd.sim import cli
from streamd.sim.xima.simulator import XimaSimulator, serve_forever
from streamd.sim.xima.webservice import WebServiceProfile


def parser() -> argparse.ArgumentParser:
    """The command line options."""
    options = cli.parser(
        "xima",
        "A simulated Xima / Avaya Call Reporting server on loopback: realtime metrics "
        "(REST and websocket), the agent mapping, historic reports and call-finished pushes.",
        port=8092,
        agents=8,
        deviates="entries and rows",
    )
    options.add_argument("--tick", type=float, default=1.0, help="seconds between data changes")
    options.add_argument("--api-key", default="sim-key", help="the Bearer key the simulator accepts")
    options.add_argument(
        "--group-metrics",
        action="store_true",
        help="add one AGENT 'Agent State' metric per group listing its agents (K0GS0000 Sales, "
        "K0GS0001 Support): agent-group metrics for agent_group_metrics",
    )
    options.add_argument(
        "--webhook",
        default=None,
        metavar="URL",
        help="WebService Integration target: POST each finished call's data there "
        "(e.g. http://127.0.0.1:8080/webhooks/xima/cr1)",
    )
    options.add_argument(
        "--webhook-secret", default=None, help="sent as the X-Streamd-Secret header of each push"
    )
    return options


def main(argv: list[str] | None = None) -> None:
    """Parse ``argv`` and serve until interrupted."""
    args = parser().parse_args(argv)
    profiles = []
    if args.webhook:
        headers = {"X-Streamd-Secret": args.webhook_secret} if args.webhook_secret else {}
        profiles.append(WebServiceProfile(args.webhook, headers=headers))

    def started(sim: XimaSimulator) -> None:
        print(f"xima simulator on {sim.url} (api key {sim.api_key})", flush=True)

    cli.serve_until_interrupted(
        lambda: serve_forever(
            host=args.host,
            port=args.port,
            agents=args.agents,
            tick=args.tick,
            api_key=args.api_key,
            deviate=args.deviate,
            profiles=profiles,
            group_state_metrics=args.group_metrics,
            started=started,
        ),
        log=True,
    )


if __name__ == "__main__":
    main()
