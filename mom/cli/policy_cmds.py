"""`momctl policy check|eval|run`: the policy author's tools, no daemon needed.

Exit status: 0 success, 1 the policy has errors (or a run failed), 2 usage
error (a file that cannot be read, an unknown controller name).
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
import sys
import time
from collections.abc import Mapping
from typing import Any

from mom.core.errors import MomError
from mom.policy.compiled import Decisions
from mom.policy.errors import PolicyError, Source
from mom.policy.generate import generate_snapshot
from mom.policy.policy import compile_policy, json_value, policy_files, read_policy_paths
from mom.policy.snapshot import SnapshotError, read_jsonl
from mom.policy.validate import PolicyChecks, check_policy

USAGE = 2  # the exit status of a usage error, as momctl's other commands


def add_parsers(sub: Any) -> None:
    p = sub.add_parser("check", help="check policies as the daemon does before it accepts them")
    p.add_argument("paths", nargs="+", metavar="FILE|DIR", help="policy files or directories, in load order")
    p.add_argument("--fields", default="", help="extra statistic names your own collectors provide (comma-separated)")
    p.add_argument("--controllers", default=None, metavar="NAME,...",
                   help="the controllers enabled where the policy runs, as in the daemon's 'controllers' "
                        "setting (default: every registered one); a control of another is a warning")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("eval", help="evaluate a policy with no entities; print each top-level value as JSON")
    p.add_argument("path", metavar="FILE|-")
    p.add_argument("--debug", action="store_true", help="show the output of (debug ...) on stderr")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("run", help="evaluate policies on recorded or generated snapshots")
    p.add_argument("paths", nargs="+", metavar="POLICY_FILE_OR_DIR", help="loaded in the order given")
    p.add_argument("--snapshots", required=True, metavar="FILE.jsonl", help="one snapshot per line ('-' for stdin)")
    p.add_argument("--timing", action="store_true", help="add eval_ms, the time of the evaluation alone")
    p.add_argument("--raw", action="store_true",
                   help="print controls as the policy set them (as the flight recorder has them), "
                        "not as the controllers would apply them")
    p.add_argument("--debug", action="store_true", help="show the output of (debug ...) on stderr")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("sample-snapshots", help="print generated snapshots (JSON lines) to try policies on")
    p.add_argument("--guests", type=int, default=4)
    p.add_argument("--rows", type=int, default=10, help="history rows per entity")
    p.add_argument("--count", type=int, default=1, help="number of snapshots")
    p.add_argument("--pressure", action="store_true", help="host under memory pressure")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_sample)


def _err(message: str) -> None:
    print(f"momctl: {message}", file=sys.stderr)


class _Failed(MomError):
    """A command cannot go on; ``status`` is its exit status (the message is printed)."""

    def __init__(self, status: int) -> None:
        self.status = status


def _sources(paths: list[str]) -> list[Source]:
    """The policy sources of files and directories. A file that cannot be read
    is a usage error (2); a directory without *.policy files an error (1): it
    would check or run nothing."""
    empty = []
    for path in paths:
        try:
            if os.path.isdir(path) and not policy_files(path):
                empty.append(path)
        except OSError as e:
            _err(f"cannot read {e.filename}: {e.strerror}")
            raise _Failed(USAGE) from None
    if empty:
        for path in empty:
            _err(f"{path}: no *.policy files in this directory")
        raise _Failed(1)
    try:
        return read_policy_paths(paths)
    except OSError as e:
        _err(f"cannot read {e.filename}: {e.strerror}")
        raise _Failed(USAGE) from None


def _debug_to_stderr(enabled: bool) -> None:
    if enabled:
        log = logging.getLogger("mom.policy.debug")
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.DEBUG)


def registry_checks(controllers: str | None, extra_fields: list[str]) -> PolicyChecks:
    """The checks the daemon makes, with every registered collector's fields and
    the given controllers enabled (None: all). Raises ValueError for an unknown name."""
    from mom.daemon.policy_checks import registry_checks as daemon_checks

    enabled = None if controllers is None else [c.strip() for c in controllers.split(",") if c.strip()]
    return daemon_checks(enabled_controllers=enabled, extra_fields=extra_fields)


def cmd_check(args: argparse.Namespace) -> int:
    try:
        sources = _sources(args.paths)
    except _Failed as e:
        return e.status
    extra = [f.strip() for f in args.fields.split(",") if f.strip()]
    try:
        checks = registry_checks(args.controllers, extra)
    except ValueError as e:
        _err(f"--controllers: {e}")
        return USAGE
    report = check_policy(sources, checks)
    for f in report.findings:
        print(f.render())
    return 1 if report.errors else 0


def cmd_eval(args: argparse.Namespace) -> int:
    _debug_to_stderr(args.debug)
    if args.path == "-":
        source = Source("<stdin>", sys.stdin.read())
    elif os.path.isdir(args.path):
        _err(f"{args.path} is a directory: eval takes one policy file")
        return USAGE
    else:
        try:
            (source,) = _sources([args.path])
        except _Failed as e:
            return e.status
    try:
        values = compile_policy([source]).evaluate()
    except PolicyError as e:
        print(e.render(), file=sys.stderr)
        return 1
    for value in values:
        print(json.dumps(json_value(value)))
    return 0


def integer_controls() -> tuple[Mapping[str, str], Mapping[str, str]]:
    """(host, guest) control name -> controller, for the controls the
    controllers apply as integers (every registered one but io_tune, whose
    entries carry their own integers)."""
    import mom.controllers  # noqa: F401  (fills the registry)
    from mom.controllers.base import control_owners

    return ({c: o for c, o in control_owners("host").items() if c != "io_tune"},
            {c: o for c, o in control_owners("guest").items() if c != "io_tune"})


def _as_applied(controls: dict[str, Any], integers: Mapping[str, str]) -> dict[str, Any]:
    """Controls as the controllers apply them: numbers for integer controls
    truncated (as int() does); anything else, which a controller would refuse
    or does not know, as the policy set it."""
    out = dict(controls)
    for name, value in controls.items():
        if name in integers and type(value) in (int, float):
            try:
                out[name] = int(value)
            except (ValueError, OverflowError):  # nan, inf: the controller refuses them
                pass
    return out


def _applied(d: Decisions, host_ints: Mapping[str, str], guest_ints: Mapping[str, str]) -> dict[str, Any]:
    out = d.to_json()
    out["host_controls"] = _as_applied(d.host_controls, host_ints)
    out["guest_controls"] = {g: _as_applied(c, guest_ints) for g, c in d.guest_controls.items()}
    return out


def cmd_run(args: argparse.Namespace) -> int:
    _debug_to_stderr(args.debug)
    try:
        sources = _sources(args.paths)
    except _Failed as e:
        return e.status
    try:
        policy = compile_policy(sources)
    except PolicyError as e:
        print(e.render(), file=sys.stderr)
        return 1
    try:
        if args.snapshots == "-":
            if isinstance(sys.stdin, io.TextIOWrapper):  # a terminal or pipe; not when replaced by a caller
                sys.stdin.reconfigure(errors="replace")
            stream = sys.stdin
        else:
            stream = open(args.snapshots, encoding="utf-8", errors="replace")  # a cut file may end mid-character
    except OSError as e:
        _err(f"cannot read {args.snapshots}: {e.strerror}")
        return USAGE
    host_ints, guest_ints = integer_controls()
    failed = False
    name = "<stdin>" if args.snapshots == "-" else args.snapshots
    with stream:
        try:
            for snapshot in read_jsonl(stream, name, on_damaged=lambda msg: _err(f"warning: {msg}")):
                t0 = time.perf_counter()
                decisions = policy.run(snapshot)
                elapsed = time.perf_counter() - t0
                out = decisions.to_json() if args.raw else _applied(decisions, host_ints, guest_ints)
                if args.timing:
                    out["eval_ms"] = round(elapsed * 1000, 3)
                failed |= not decisions.ok
                print(json.dumps(json_value(out)))
        except SnapshotError as e:
            _err(str(e))
            return 1
    return 1 if failed else 0


def cmd_sample(args: argparse.Namespace) -> int:
    for i in range(args.count):
        snap = generate_snapshot(args.guests, args.rows, args.pressure, seed=args.seed + i)
        print(json.dumps(snap.to_json()))
    return 0
