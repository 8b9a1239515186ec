"""momctl explain GUEST: why the guest got its control.

    momctl (--socket PATH | --port N) explain GUEST [--tick N] [--json]
    momctl explain GUEST --record FILE [--policy FILE|DIR] [--tick N] [--json]

From a running momd: its last tick. From a flight recorder file: tick N, or the
last tick in which the guest got a control. The record keeps the policy's
variables for the guests that got a control; for another guest, or a record
without them, --policy evaluates the recorded snapshot again with tracing.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from mom.cli import rpc_cmds
from mom.engine.explain import ExplainError, explain, pick_tick

EXIT_OK, EXIT_ERROR, EXIT_USAGE = 0, 1, 2
MEMORY_FIELDS = {"balloon_cur", "balloon_min", "balloon_max", "balloon_target", "mem_unused", "mem_free",
                 "mem_available", "swap_usage", "ksm_shareable"}  # in KiB: shown in MiB


def _value(name: str, value: Any) -> str:
    if name in MEMORY_FIELDS and isinstance(value, (int, float)) and not isinstance(value, bool):
        return f"{value / 1024:.0f} MiB"
    if isinstance(value, float):
        return f"{value:.6g}"
    if value is None:
        return "nil"
    return json.dumps(value) if isinstance(value, (list, str)) else str(value)


def _pairs(values: dict[str, Any], indent: str = "  ") -> list[str]:
    if not values:
        return [f"{indent}(none)"]
    width = max(len(k) for k in values)
    return [f"{indent}{k.ljust(width)}  {_value(k, v)}" for k, v in values.items()]


def _action(a: dict[str, Any]) -> str:
    control = a.get("control", "?")
    change = f"{_value(control, a.get('old'))} -> {_value(control, a.get('new'))}"
    if a.get("applied"):
        return f"{a.get('controller')}: {control} {change}, applied" + (f" ({a['reason']})" if a.get("reason") else "")
    return f"{a.get('controller')}: {control} {change}, REFUSED: {a.get('reason')}"


def render(x: dict[str, Any]) -> str:
    """An explanation as text: the decision first, then why."""
    guest = x["guest"]
    lines = [f"{guest} in tick {x['tick']} at {rpc_cmds._when(x.get('time'))}:"]
    if not x.get("policy_ok", True):
        lines.append(f"  the policy FAILED this tick, nothing was decided: {x.get('policy_error')}")
    elif x["controls"]:
        lines.append("  the policy set " + ", ".join(f"{k} {_value(k, v)}" for k, v in x["controls"].items()))
    else:
        lines.append("  the policy set no control for it")
    lines += [f"  {_action(a)}" for a in x["actions"]]
    last = x.get("last_applied")
    if last and last.get("time") != x.get("time"):
        lines.append(f"  its last applied control: {_action(last)} at {rpc_cmds._when(last.get('time'))}")
    lines.append("")
    lines.append(f"Why: the policy's functions that ran for {guest}: " + (", ".join(x["calls"]) or "(none)"))
    lines.append(f"Its variables for {guest}:")
    lines += _pairs(x["variables"])
    lines.append("The policy's variables for the host" +
                 (f" (functions: {', '.join(x['host_calls'])})" if x["host_calls"] else "") + ":")
    lines += _pairs(x["host_variables"])
    lines.append(f"Inputs, the newest statistics of {guest}:")
    lines += _pairs(x["inputs"])
    lines.append("and of the host:")
    lines += _pairs(x["host_inputs"])
    lines.append(f"(variables {x['trace']})")
    if x.get("trace_error"):
        lines.append(f"(the traced run stopped early, the variables are those it had: {x['trace_error']})")
    return "\n".join(lines)


def _print(x: dict[str, Any], as_json: bool) -> None:
    print(json.dumps(x, indent=2, sort_keys=True) if as_json else render(x))


def cmd_explain_rpc(mom: Any, args: argparse.Namespace) -> int:
    _print(mom.explainGuest(args.guest, args.tick), args.json)
    return EXIT_OK


def _read_records(path: str) -> list[dict[str, Any]]:
    """The whole JSON lines of a record file (a cut last line is skipped). Raises ExplainError."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            text = f.read()
    except OSError as e:
        raise ExplainError(f"cannot read {path}: {e.strerror}") from None
    records = []
    for n, line in enumerate(text.splitlines(keepends=True), 1):
        if not line.endswith("\n"):
            break  # a line being written, or cut by a crash
        try:
            value = json.loads(line)
        except json.JSONDecodeError as e:
            raise ExplainError(f"{path}:{n}: not a record line: {e.msg}") from None
        if isinstance(value, dict):
            records.append(value)
    return records


def _load_policy(paths: list[str] | None) -> Any:
    if not paths:
        return None
    from mom.policy.policy import PolicyError, compile_policy, read_policy_paths
    try:
        return compile_policy(read_policy_paths(paths))
    except OSError as e:
        raise ExplainError(f"cannot read {e.filename}: {e.strerror}") from None
    except PolicyError as e:
        raise ExplainError(f"policy: {e}") from None


def cmd_explain(args: argparse.Namespace) -> int:
    if args.record is None:
        if args.policy:
            print("momctl: --policy goes with --record FILE (a running momd explains with its own policy)",
                  file=sys.stderr)
            return EXIT_USAGE
        args.rpc = cmd_explain_rpc
        return rpc_cmds.run(args)
    try:
        record = pick_tick(_read_records(args.record), args.guest, args.tick)
        x = explain(record, args.guest, _load_policy(args.policy))
    except ExplainError as e:
        print(f"momctl: {e}", file=sys.stderr)
        return EXIT_ERROR
    _print(x, args.json)
    return EXIT_OK


def add_parser(sub: Any) -> None:
    p = sub.add_parser("explain", help="why a guest got its control: the policy's variables and values",
                       description=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    rpc_cmds._connection_options(p, suppress=True)
    p.add_argument("guest", metavar="GUEST")
    p.add_argument("--tick", metavar="N", type=int, help="that tick (default: the guest's last control)")
    p.add_argument("--record", metavar="FILE", help="explain from a flight recorder file, no daemon needed")
    p.add_argument("--policy", metavar="FILE|DIR", action="append",
                   help="evaluate the recorded snapshot again with this policy (with --record)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_explain)
