"""momctl: MOM's command-line tool."""

from __future__ import annotations

import argparse
import sys

from mom.cli import policy_cmds


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="momctl", description="Control and inspect MOM.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    policy = sub.add_parser("policy", help="check, evaluate and replay policies")
    policy_cmds.add_parsers(policy.add_subparsers(dest="policy_command", required=True, metavar="SUBCOMMAND"))
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
