"""`momctl policy check|eval|run`: the policy author's tools, no daemon needed."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from typing import Any

from mom.policy.checker import check_sources
from mom.policy.errors import PolicyError, Source
from mom.policy.generate import generate_snapshot
from mom.policy.policy import compile_policy, json_value, read_policy_paths
from mom.policy.snapshot import SnapshotError, read_jsonl


def add_parsers(sub: Any) -> None:
    p = sub.add_parser("check", help="check policies without running them")
    p.add_argument("paths", nargs="+", metavar="FILE|DIR", help="policy files or directories, in load order")
    p.add_argument("--fields", default="", help="extra statistic names your own collectors provide (comma-separated)")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("eval", help="evaluate a policy with no entities; print each top-level value as JSON")
    p.add_argument("path", metavar="FILE|-")
    p.add_argument("--debug", action="store_true", help="show the output of (debug ...) on stderr")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("run", help="evaluate policies on recorded or generated snapshots")
    p.add_argument("paths", nargs="+", metavar="POLICY_FILE_OR_DIR", help="loaded in the order given")
    p.add_argument("--snapshots", required=True, metavar="FILE.jsonl", help="one snapshot per line ('-' for stdin)")
    p.add_argument("--timing", action="store_true", help="add eval_ms, the time of the evaluation alone")
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


def _sources(paths: list[str]) -> list[Source] | None:
    try:
        return read_policy_paths(paths)
    except OSError as e:
        _err(f"cannot read {e.filename}: {e.strerror}")
        return None


def _debug_to_stderr(enabled: bool) -> None:
    if enabled:
        log = logging.getLogger("mom.policy.debug")
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.DEBUG)


def cmd_check(args: argparse.Namespace) -> int:
    sources = _sources(args.paths)
    if sources is None:
        return 1
    extra = [f.strip() for f in args.fields.split(",") if f.strip()]
    findings = check_sources(sources, extra)
    for f in findings:
        print(f)
    errors = sum(f.severity == "error" for f in findings)
    return 1 if errors else 0


def cmd_eval(args: argparse.Namespace) -> int:
    _debug_to_stderr(args.debug)
    if args.path == "-":
        source = Source("<stdin>", sys.stdin.read())
    else:
        sources = _sources([args.path])
        if sources is None:
            return 1
        source = sources[0]
    try:
        values = compile_policy([source]).evaluate()
    except PolicyError as e:
        print(e.render(), file=sys.stderr)
        return 1
    for value in values:
        print(json.dumps(json_value(value)))
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    _debug_to_stderr(args.debug)
    sources = _sources(args.paths)
    if sources is None:
        return 1
    try:
        policy = compile_policy(sources)
    except PolicyError as e:
        print(e.render(), file=sys.stderr)
        return 1
    failed = False
    try:
        stream = sys.stdin if args.snapshots == "-" else open(args.snapshots, encoding="utf-8")
    except OSError as e:
        _err(f"cannot read {args.snapshots}: {e.strerror}")
        return 1
    with stream:
        try:
            for snapshot in read_jsonl(stream, "<stdin>" if args.snapshots == "-" else args.snapshots):
                t0 = time.perf_counter()
                decisions = policy.run(snapshot)
                elapsed = time.perf_counter() - t0
                out = decisions.to_json()
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
