"""The `nrm` command: up, serve, migrate, demo (CONTRACT.md), and maintenance commands."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from nrm.settings import COMPONENTS


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nrm", description="Open NRM platform")
    commands = parser.add_subparsers(dest="command", required=True)

    up = commands.add_parser("up", help="all five components in one process")
    up.add_argument("--demo", action="store_true", help="load the demo data set first")
    up.add_argument("--host", default="127.0.0.1")
    up.add_argument("--port", type=int, default=8000)

    serve = commands.add_parser("serve", help="one component, for containers and scale-out")
    serve.add_argument("component", choices=COMPONENTS)
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)

    migrate = commands.add_parser("migrate", help="apply database migrations")
    migrate.add_argument("component", choices=(*COMPONENTS, "all"))

    commands.add_parser("demo", help="load the demo data set (idempotent)")
    commands.add_parser("asyncapi", help="print the AsyncAPI 3.0 document of every event")

    intake = commands.add_parser("intake", help="intake maintenance")
    intake_commands = intake.add_subparsers(dest="intake_command", required=True)
    intake_commands.add_parser(
        "verify-log", help="check every case's access-log hash chain; report the first break"
    )
    intake_commands.add_parser(
        "rewrap", help="re-wrap case data keys still under an older master key"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from nrm import runner

    return runner.run(args)


if __name__ == "__main__":
    sys.exit(main())
