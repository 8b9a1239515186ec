"""Why a guest got its control: one tick's record and the policy's trace of it.

An explanation (a JSON value, what `momctl explain --json` prints) holds the
tick, the controls the policy set for the guest and what the controllers did
with them, the policy's functions that ran for the guest (the branch taken),
the variables it computed for the guest and for the host, and the inputs: the
guest's and the host's newest statistics.

The trace comes from the record when the daemon wrote one (``"trace"``, each
tick, see ``tick_trace``) or from evaluating the recorded snapshot again with
tracing (mom.policy.trace), on the daemon's policy or a policy file.
"""

from __future__ import annotations

from typing import Any

from mom.core.errors import MomError
from mom.policy.compiled import CompiledPolicy
from mom.policy.snapshot import from_json
from mom.policy.trace import Trace, plain, trace_run

# Statistics shown as the inputs behind a decision (the rest is in the record).
GUEST_INPUTS = ("balloon_cur", "balloon_min", "balloon_max", "mem_unused", "mem_free", "mem_available",
                "swap_usage", "swap_in", "major_fault")
HOST_INPUTS = ("mem_free", "mem_available", "mem_unused", "swap_usage", "ksm_run", "ksm_pages_to_scan",
               "ksm_shareable", "some_avg10", "full_avg10")


class ExplainError(MomError, ValueError):
    """Nothing to explain (one line: why)."""


def tick_trace(trace: Trace, guests: set[str] | None = None) -> dict[str, Any]:
    """The part of a trace a record line keeps: host variables and calls, and those
    of the guests named (all when None)."""
    def keep(name: str) -> bool:
        return guests is None or name in guests
    return {"ok": trace.ok, "error": trace.error,
            "host_variables": trace.host_variables, "host_calls": trace.host_calls,
            "guest_variables": {g: v for g, v in trace.guest_variables.items() if keep(g)},
            "guest_calls": {g: c for g, c in trace.guest_calls.items() if keep(g)}}


def guest_names(record: dict[str, Any]) -> list[str]:
    return [str(g.get("properties", {}).get("name")) for g in record.get("guests", []) if isinstance(g, dict)]


def touches(record: dict[str, Any], guest: str) -> bool:
    """Whether the policy set a control for the guest in this tick, or a controller acted on it."""
    controls = record.get("guest_controls") or {}
    return guest in controls or any(a.get("target") == guest for a in record.get("actions") or [])


def pick_tick(records: list[dict[str, Any]], guest: str, tick: int | None) -> dict[str, Any]:
    """The record of tick N, or the last in which the guest got a control (else the
    last it was in). Raises ExplainError."""
    if tick is not None:
        for r in records:
            if r.get("tick") == tick:
                if guest not in guest_names(r):
                    raise ExplainError(f"guest {guest} is not in tick {tick}")
                return r
        ticks = [r.get("tick") for r in records]
        raise ExplainError(f"no tick {tick} in the record (it holds ticks {ticks[0]}-{ticks[-1]})" if ticks
                           else "the record holds no ticks")
    seen = [r for r in records if guest in guest_names(r)]
    if not seen:
        raise ExplainError(f"guest {guest} is in no tick of the record")
    controlled = [r for r in seen if touches(r, guest)]
    return (controlled or seen)[-1]


def _newest(entity: dict[str, Any], fields: tuple[str, ...]) -> dict[str, Any]:
    rows = entity.get("statistics") or []
    row = rows[-1] if rows and isinstance(rows[-1], dict) else {}
    return {k: row[k] for k in fields if k in row}


def _trace(record: dict[str, Any], guest: str, policy: CompiledPolicy | None) -> tuple[dict[str, Any], str]:
    """The tick's trace and where it came from: the record's when it has the guest,
    else a new evaluation with the policy, else the record's host part."""
    recorded = record.get("trace") if isinstance(record.get("trace"), dict) else None
    if recorded is not None and guest in (recorded.get("guest_calls") or {}):
        return recorded, "recorded"
    if policy is not None:
        return tick_trace(trace_run(policy, from_json(record))), "evaluated again"
    if recorded is not None:
        return recorded, "recorded (the host's part: the record keeps guests' variables when they get a control)"
    raise ExplainError(f"tick {record.get('tick')} has no policy variables recorded: "
                       "give the policy (--policy FILE|DIR) to evaluate it again")


def explain(record: dict[str, Any], guest: str, policy: CompiledPolicy | None = None) -> dict[str, Any]:
    """Explain the guest's decisions in one tick's record. The trace is the
    record's own, else made with ``policy``. Raises ExplainError."""
    entity = next((g for g in record.get("guests", []) if g.get("properties", {}).get("name") == guest), None)
    if entity is None:
        raise ExplainError(f"guest {guest} is not in tick {record.get('tick')}")
    trace, source = _trace(record, guest, policy)
    controls = (record.get("guest_controls") or {}).get(guest, {})
    return {
        "guest": guest,
        "tick": record.get("tick"),
        "time": record.get("time"),
        "policy_ok": record.get("ok", True),
        "policy_error": record.get("error"),
        "controls": {k: plain(v) for k, v in controls.items()},
        "actions": [a for a in record.get("actions") or [] if a.get("target") == guest],
        "calls": (trace.get("guest_calls") or {}).get(guest, []),
        "variables": (trace.get("guest_variables") or {}).get(guest, {}),
        "host_calls": trace.get("host_calls") or [],
        "host_variables": trace.get("host_variables") or {},
        "inputs": _newest(entity, GUEST_INPUTS),
        "host_inputs": _newest(record.get("host") or {}, HOST_INPUTS),
        "trace": source,
        "trace_error": None if trace.get("ok", True) else trace.get("error"),
    }
