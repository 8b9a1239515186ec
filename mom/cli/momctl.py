"""momctl: MOM's command-line tool."""

from __future__ import annotations

import argparse
import sys

from mom import __version__
from mom.cli import bench_cmd, explain, plot, policy_cmds, rpc_cmds, top


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="momctl", description="Control and inspect MOM.",
        epilog=f"Commands that talk to momd use its socket {rpc_cmds.DEFAULT_SOCKET}, or --socket PATH or --port N "
               "(before or after the command). "
               "Exit status: 0 success, 1 the daemon answered with an error, 2 usage error, 3 cannot connect.")
    parser.add_argument("--version", action="version", version=f"momctl {__version__}")
    rpc_cmds.add_global_options(parser)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    policy = sub.add_parser("policy", help="check, evaluate and replay policies; get and set the daemon's")
    policy_sub = policy.add_subparsers(dest="policy_command", required=True, metavar="SUBCOMMAND")
    policy_cmds.add_parsers(policy_sub)
    rpc_cmds.add_policy_parsers(policy_sub)
    rpc_cmds.add_parsers(sub)
    explain.add_parser(sub)
    plot.add_parser(sub)
    top.add_parser(sub)
    bench_cmd.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        status: int = args.func(args)
        return status
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
