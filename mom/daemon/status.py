"""The one readable line per policy tick that momd logs at info level."""

from __future__ import annotations

from typing import Any

from mom.controllers.base import Action


def _mib(kib: Any) -> str:
    if not isinstance(kib, (int, float)) or isinstance(kib, bool):
        return "?"
    return f"{kib / 1024:.0f}"


def _action(a: Action) -> str:
    who = "" if a.target == "host" else f"{a.target} "
    if a.control == "balloon_target":
        text = f"{who}balloon {_mib(a.old)}->{_mib(a.new)} MiB"
    elif a.control == "io_tune":
        text = f"{who}io_tune"
    else:
        text = f"{who}{a.control} {a.old}->{a.new}"
    return text if a.applied else f"{text} REFUSED"  # the reason is logged once as a fault


def tick_line(number: int, host: dict[str, Any], guests_ready: int, guests_known: int,
              actions: list[Action], ok: bool, error: str | None, max_actions: int = 6) -> str:
    """e.g. ``tick 7: host free 14.2% (1163 of 8192 MiB), guests 6/6, 2 actions: vm1 balloon 2048->1946 MiB, ksm_run 0->1``"""
    free, total = host.get("mem_free"), host.get("mem_available")
    if isinstance(free, (int, float)) and isinstance(total, (int, float)) and total:
        mem = f"host free {100 * free / total:.1f}% ({_mib(free)} of {_mib(total)} MiB)"
    else:
        mem = "host free ?"
    line = f"tick {number}: {mem}, guests {guests_ready}/{guests_known}"
    if not ok:
        # The error itself is logged once by the fault log when it starts, not every tick.
        return f"{line}, policy FAILED (see the policy evaluation error)"
    if not actions:
        return f"{line}, no actions"
    shown = ", ".join(_action(a) for a in actions[:max_actions])
    more = f", and {len(actions) - max_actions} more" if len(actions) > max_actions else ""
    return f"{line}, {len(actions)} action{'s' if len(actions) != 1 else ''}: {shown}{more}"
