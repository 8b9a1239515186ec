"""The log's account of the policy ticks: one line for a tick that did something,
one line a minute (of the engine's clock) while nothing happens.

A tick with actions says what changed, memory in MiB:

    tick 24: host free 17.8% (1456 of 8192 MiB), guests 6/6, 7 actions: balloon -612 MiB: web1 2048->1946, ...; ksm_pages_to_scan 64->364

every action listed up to MAX_LISTED guest actions; past that, counted per control
("balloon -4080 MiB on 40 guests ... see momctl actions"). Quiet ticks (no action,
nothing else changed) are logged at debug level one by one and summarised at
info level once per QUIET_SECONDS:

    ticks 2-7: no actions for 60 s; host free 42.0% -> 35.8% (lowest 35.8%), guests 6/6

A failing policy is a change when it starts or stops (its error is logged once
by the fault log); while it goes on, its ticks are summarised like quiet ones.
"""  # noqa: E501 - the docstring quotes a log line whole

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from mom.core.actions import Action
from mom.engine.status import EngineStatus

QUIET_SECONDS = 60.0  # clock seconds between two summaries of quiet ticks
MAX_LISTED = 8  # guest actions listed one by one; more are counted


def number(value: Any) -> float | None:
    """A statistic's value as a float; None when it is missing or not a number."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return None


def _mib(kib: Any) -> str:
    value = number(kib)
    return "?" if value is None else f"{value / 1024:.0f}"


def _signed_mib(kib: float) -> str:
    return f"{kib / 1024:+.0f} MiB"


def free_share(host: dict[str, Any]) -> float | None:
    """The host's free share (mem_free over mem_available, as the sample policies), or None."""
    free, total = number(host.get("mem_free")), number(host.get("mem_available"))
    if free is None or not total:
        return None
    return free / total


def _host_memory(host: dict[str, Any]) -> str:
    share = free_share(host)
    if share is None:
        return "host free ?"
    return f"host free {100 * share:.1f}% ({_mib(host.get('mem_free'))} of {_mib(host.get('mem_available'))} MiB)"


def _refused(a: Action) -> str:
    return "" if a.applied else " REFUSED"  # the reason is logged once as a fault


def _guest_change(a: Action) -> str:
    """One guest action, for a list under its control's name."""
    if a.control == "balloon_target":
        return f"{a.target} {_mib(a.old)}->{_mib(a.new)}{_refused(a)}"
    if a.control == "io_tune":
        return f"{a.target}{_refused(a)}"
    return f"{a.target} {a.old}->{a.new}{_refused(a)}"


def _balloon_delta(actions: Sequence[Action]) -> float:
    """The applied balloon change in KiB (negative: memory taken from guests)."""
    total = 0.0
    for a in actions:
        old, new = number(a.old), number(a.new)
        if a.applied and old is not None and new is not None:
            total += new - old
    return total


def _by_control(actions: Sequence[Action]) -> dict[str, list[Action]]:
    groups: dict[str, list[Action]] = {}
    for a in actions:
        groups.setdefault(a.control, []).append(a)
    return groups


def _listed(control: str, actions: Sequence[Action]) -> str:
    """Every action of one guest control: ``balloon -612 MiB: web1 2048->1946, ...``."""
    changes = ", ".join(_guest_change(a) for a in actions)
    if control == "balloon_target":
        return f"balloon {_signed_mib(_balloon_delta(actions))}: {changes}"
    return f"{control}: {changes}"


def _counted(control: str, actions: Sequence[Action]) -> str:
    """One guest control's actions as counts: ``balloon -4080 MiB on 40 guests, +200 MiB on 2``."""
    refused = sum(1 for a in actions if not a.applied)
    applied = [a for a in actions if a.applied]
    if control == "balloon_target":
        down = [a for a in applied if (number(a.new) or 0) < (number(a.old) or 0)]
        up = [a for a in applied if a not in down]
        parts = [f"{_signed_mib(_balloon_delta(group))} on {len(group)} guest{'s' if len(group) != 1 else ''}"
                 for group in (down, up) if group]
        text = "balloon " + ", ".join(parts) if parts else "balloon"
    else:
        text = f"{control} on {len(applied)} guest{'s' if len(applied) != 1 else ''}"
    return text + (f", {refused} REFUSED" if refused else "")


def describe_actions(actions: Sequence[Action], max_listed: int = MAX_LISTED) -> str:
    """The actions of one tick: host controls one by one, guest controls grouped by
    control, listed or (past max_listed) counted."""
    host = [a for a in actions if a.target == "host"]
    guests = [a for a in actions if a.target != "host"]
    groups = _by_control(guests)
    if len(guests) <= max_listed:
        parts = [_listed(control, group) for control, group in groups.items()]
    else:
        parts = [_counted(control, group) for control, group in groups.items()]
    parts += [f"{a.control} {a.old}->{a.new}{_refused(a)}" for a in host]
    return "; ".join(parts)


def tick_line(number: int, host: dict[str, Any], guests_ready: int, guests_known: int,
              actions: Sequence[Action], ok: bool, error: str | None, max_listed: int = MAX_LISTED,
              quiet_since: int | None = None) -> str:
    """The line of one tick. quiet_since: the first of the quiet ticks before it
    that no line told of yet."""
    quiet_before = quiet_since is not None and quiet_since < number
    quiet = f" (ticks {quiet_since}-{number - 1}: no change)" if quiet_before else ""
    line = f"tick {number}{quiet}: {_host_memory(host)}, guests {guests_ready}/{guests_known}"
    if not ok:
        # The error itself is logged once by the fault log when it starts, not every tick.
        return f"{line}, policy FAILED (see the policy evaluation error)"
    if not actions:
        return f"{line}, no actions"
    count = f"{len(actions)} action{'s' if len(actions) != 1 else ''}"
    guest_actions = sum(1 for a in actions if a.target != "host")
    if guest_actions > max_listed:
        count += " (see momctl actions)"
    return f"{line}, {count}: {describe_actions(actions, max_listed)}"


@dataclass
class _QuietRun:
    """Ticks not told of yet, one by one, since the last info line."""

    first: int
    last: int
    first_share: float | None
    last_share: float | None
    lowest: float | None
    failed: int
    guests: str

    def add(self, number: int, share: float | None, failed: bool, guests: str) -> None:
        self.last = number
        self.last_share = share
        if share is not None:
            self.lowest = share if self.lowest is None else min(self.lowest, share)
        self.failed += failed
        self.guests = guests


def _pct(share: float | None) -> str:
    return "?" if share is None else f"{100 * share:.1f}%"


class TickLog:
    """Decides, tick by tick, what the log says: a line for a tick that changed
    something, a summary line a minute for the quiet ones (every tick at debug)."""

    def __init__(self, logger: logging.Logger, quiet_seconds: float = QUIET_SECONDS,
                 max_listed: int = MAX_LISTED) -> None:
        self.log = logger
        self.quiet_seconds = quiet_seconds
        self.max_listed = max_listed
        self._last_info: float | None = None  # clock time of the last info line
        self._last_ok: bool | None = None
        self._last_guests: tuple[int, int] | None = None
        self._quiet: _QuietRun | None = None

    def log_tick(self, status: EngineStatus) -> None:
        """The line (or not) for the tick in the engine's status."""
        record = status.last_tick
        if record is None:
            return
        statistics = record.snapshot.host.statistics
        self.tick(record.number, record.time, statistics[-1] if statistics else {}, len(record.snapshot.guests),
                  len(status.guests), record.actions, record.decisions.ok, record.decisions.error)

    def tick(self, number: int, time: float, host: dict[str, Any], guests_ready: int, guests_known: int,
             actions: Sequence[Action], ok: bool, error: str | None = None) -> None:
        changed = (bool(actions) or ok != self._last_ok or (guests_ready, guests_known) != self._last_guests
                   or self._last_info is None)
        self._last_ok, self._last_guests = ok, (guests_ready, guests_known)
        if changed:
            quiet_since = self._quiet.first if self._quiet is not None else None
            self._quiet = None
            self._last_info = time
            if self.log.isEnabledFor(logging.INFO):  # a line of a 500-guest tick takes a while to write
                self.log.info("%s", tick_line(number, host, guests_ready, guests_known, actions, ok, error,
                                              self.max_listed, quiet_since))
            return
        if self.log.isEnabledFor(logging.DEBUG):
            self.log.debug("%s", tick_line(number, host, guests_ready, guests_known, actions, ok, error,
                                           self.max_listed))
        share, guests = free_share(host), f"{guests_ready}/{guests_known}"
        if self._quiet is None:
            self._quiet = _QuietRun(number, number, share, share, share, int(not ok), guests)
        else:
            self._quiet.add(number, share, not ok, guests)
        assert self._last_info is not None
        if time - self._last_info >= self.quiet_seconds:
            self.log.info("%s", self._summary(time - self._last_info))
            self._quiet = None
            self._last_info = time

    def _summary(self, seconds: float) -> str:
        q = self._quiet
        assert q is not None
        ticks = f"tick {q.first}" if q.first == q.last else f"ticks {q.first}-{q.last}"
        what = (f"policy FAILED on {q.failed} tick{'s' if q.failed != 1 else ''} (see the policy evaluation error)"
                if q.failed else "no actions")
        memory = (f"host free {_pct(q.first_share)} -> {_pct(q.last_share)} (lowest {_pct(q.lowest)})"
                  if q.first != q.last else f"host free {_pct(q.last_share)}")
        return f"{ticks}: {what} for {seconds:.0f} s; {memory}, guests {q.guests}"
