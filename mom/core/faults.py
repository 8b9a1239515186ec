"""Log each distinct fault once, not every tick, and say once when it clears.

A fault is keyed by a :class:`FaultKey`: the health component it counts
against, what failed (a call, a collector, a controller, a file) and for whom
(the host, a guest, or the daemon itself). The key renders as the text the log
and ``getHealth`` show ("guest vm3 controller Balloon", "hypervisor
list_guests"), so a guest's faults can be forgotten by its name rather than by
matching text.

:class:`OncePerKind` is the other shape, for events that do not clear (a
refused client request, a libvirt error code seen for some guests): the first
of a kind is logged, then one line per period with the count of those
suppressed; with no period, only the first of each kind.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import NamedTuple

from mom.core.actions import HOST  # the target of host faults; any other target is a guest's name


class FaultKey(NamedTuple):
    """What failed, and where (a tuple: made and hashed for every step's collectors,
    so it must be cheap).

    component: the health component (engine, hypervisor, collector, policy,
    controller, output); what: the failing part ("list_guests", "collector
    HostKSM", "evaluation"), may be empty; target: "host", a guest's name, or
    None for a fault of the daemon itself.
    """

    component: str
    what: str = ""
    target: str | None = None

    def __str__(self) -> str:
        if self.target is None:
            who = self.component
        else:
            who = HOST if self.target == HOST else f"guest {self.target}"
        return f"{who} {self.what}" if self.what else who


@dataclass(frozen=True)
class FaultCounts:
    """A copy of the fault log's tallies: errors seen and the last one, per component."""

    counts: Mapping[str, int]
    last: Mapping[str, tuple[float, str]]  # component -> (clock time, "key: message")
    active: Mapping[str, Mapping[str, str]]  # component -> {rendered key: message}


class FaultLog:
    """Remembers which faults are active, per key.

    ``report`` logs a fault the first time it is seen for a key, or when its
    message changes, unless the same message is already active under another
    key (one outage seen by several steps is one fault); ``clear`` logs that
    the key recovered, once, if its fault was logged. Times come from the
    engine's clock (simulated under a fast clock), so health never mixes it
    with wall time.
    """

    def __init__(self, logger: logging.Logger, clock: Callable[[], float]) -> None:
        self.log = logger
        self.clock = clock
        self._lock = threading.Lock()
        self._active: dict[FaultKey, str] = {}
        self._logged: set[FaultKey] = set()  # active keys whose fault was logged
        self._counts: dict[str, int] = {}  # component -> errors seen (for metrics and health)
        self._last: dict[str, tuple[float, str]] = {}  # component -> (time, "key: message")
        self._tallies: FaultCounts | None = None  # the last tallies(), until a report or clear

    def report(self, key: FaultKey, message: str, level: int = logging.WARNING) -> None:
        with self._lock:
            self._tallies = None
            self._counts[key.component] = self._counts.get(key.component, 0) + 1
            self._last[key.component] = (self.clock(), f"{key}: {message}")
            if self._active.get(key) == message:
                return
            seen_elsewhere = message in self._active.values()
            self._active[key] = message
            # Below INFO: recorded for health, not logged (the interface logs its outage itself).
            if seen_elsewhere or level < logging.INFO:
                self._logged.discard(key)
                if level >= logging.INFO:
                    return
            else:
                self._logged.add(key)
        self.log.log(level, "%s: %s", key, message)

    def clear(self, key: FaultKey) -> None:
        # Called for every collector and section of every guest each step, nearly always
        # for a key with no fault: that answer needs no lock (a dict lookup is atomic).
        if key not in self._active:
            return
        with self._lock:
            if self._active.pop(key, None) is None:
                return
            self._tallies = None
            if key not in self._logged:
                return
            self._logged.discard(key)
        self.log.info("%s: recovered", key)

    def forget_target(self, target: str) -> None:
        """Forget the faults of something that went away (a guest), without a log line."""
        with self._lock:
            for key in [k for k in self._active if k.target == target]:
                del self._active[key]
                self._logged.discard(key)
                self._tallies = None

    def active(self) -> dict[str, str]:
        """Active faults: rendered key -> message."""
        with self._lock:
            return {str(k): m for k, m in self._active.items()}

    @property
    def counts(self) -> dict[str, int]:
        """Errors seen per component (a copy)."""
        with self._lock:
            return dict(self._counts)

    def tallies(self) -> FaultCounts:
        """Counts, last errors and active faults by component, read together (the
        same value until the next report or clear: the engine reads it every step)."""
        with self._lock:
            if self._tallies is not None:
                return self._tallies
            active: dict[str, dict[str, str]] = {}
            for key, message in self._active.items():
                active.setdefault(key.component, {})[str(key)] = message
            self._tallies = FaultCounts(MappingProxyType(dict(self._counts)), MappingProxyType(dict(self._last)),
                                        MappingProxyType({c: MappingProxyType(a) for c, a in active.items()}))
            return self._tallies


class OncePerKind:
    """Logs the first problem of each kind, then at most one line per period with the
    number seen in between: a flood of bad clients is a few log lines, not thousands.
    With the default period (math.inf) a kind is logged once for good.

    For events rather than states: a refused request has no "cleared", and a
    client's mistake is not the daemon's health, so these are not FaultLog faults.
    A caller that writes its own line asks :meth:`due` and logs when it says so.
    """

    def __init__(self, logger: logging.Logger, period: float = math.inf) -> None:
        self.log = logger
        self.period = period
        self._seen: dict[object, tuple[float, int]] = {}  # kind -> (last logged, suppressed since)
        self._lock = threading.Lock()

    def due(self, kind: object) -> int | None:
        """Whether a line for ``kind`` is due now: the number suppressed since the last
        line (0 the first time), or None when one was logged within the period (this
        one is then counted as suppressed)."""
        now = time.monotonic()
        with self._lock:
            last, suppressed = self._seen.get(kind, (None, 0))
            if last is not None and now - last < self.period:
                self._seen[kind] = (last, suppressed + 1)
                return None
            self._seen[kind] = (now, 0)
        return suppressed

    def report(self, kind: object, message: str, level: int = logging.INFO) -> None:
        suppressed = self.due(kind)
        if suppressed is None:
            return
        more = f" ({suppressed} more since the last such line)" if suppressed else ""
        self.log.log(level, "%s%s", message, more)
