"""Log each distinct fault once, not every tick, and say when it clears."""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable


class FaultLog:
    """Remembers which faults are active, per key (e.g. "collector HostKSM").

    ``report`` logs a fault the first time it is seen for a key, or when its
    message changes, unless the same message is already active under another
    key (one outage seen by several steps is one fault); ``clear`` logs that
    the key recovered, once, if its fault was logged.
    """

    def __init__(self, logger: logging.Logger, clock: Callable[[], float] = time.time) -> None:
        """clock: the time stamped on faults, the engine's (simulated under a fast clock)."""
        self.log = logger
        self.clock = clock
        self._active: dict[str, str] = {}
        self._lock = threading.Lock()
        self.counts: dict[str, int] = {}  # component -> errors seen (for metrics and health)
        self.last: dict[str, tuple[float, str]] = {}  # component -> (time, message)
        self._components: dict[str, str] = {}  # key -> component of its last report
        self._logged: set[str] = set()  # active keys whose fault was logged

    def report(self, key: str, message: str, component: str | None = None, level: int = logging.WARNING) -> None:
        comp = component or key.split(" ", 1)[0]
        with self._lock:
            self.counts[comp] = self.counts.get(comp, 0) + 1
            self.last[comp] = (self.clock(), f"{key}: {message}")
            self._components[key] = comp
            if self._active.get(key) == message:
                return
            seen_elsewhere = message in self._active.values()
            self._active[key] = message
            if seen_elsewhere or level < logging.INFO:
                self._logged.discard(key)
                if level >= logging.INFO:
                    return
            else:
                self._logged.add(key)
        self.log.log(level, "%s: %s", key, message)

    def clear(self, key: str) -> None:
        with self._lock:
            if self._active.pop(key, None) is None:
                return
            if key not in self._logged:
                return
            self._logged.discard(key)
        self.log.info("%s: recovered", key)

    def clear_prefix(self, prefix: str) -> None:
        """Forget faults of something that went away (a guest), without a log line."""
        with self._lock:
            for key in [k for k in self._active if k.startswith(prefix)]:
                del self._active[key]
                self._logged.discard(key)
            for key in [k for k in self._components if k.startswith(prefix)]:
                del self._components[key]

    def active(self) -> dict[str, str]:
        with self._lock:
            return dict(self._active)

    def active_by_component(self) -> dict[str, dict[str, str]]:
        """Active faults grouped by component: component -> {key: message}."""
        with self._lock:
            out: dict[str, dict[str, str]] = {}
            for key, message in self._active.items():
                comp = self._components.get(key, key.split(" ", 1)[0])
                out.setdefault(comp, {})[key] = message
            return out
