"""Clocks: the one place that owns time.

The daemon and the simulator both read time from a Clock, so a test or a
benchmark can run the whole system faster than real time with FastClock.
"""

from __future__ import annotations

import threading
import time


class Clock:
    """Real time: Unix time for stamps, sleeping on an Event so stop is prompt."""

    speed = 1.0

    def time(self) -> float:
        """Seconds since the epoch (simulated for FastClock)."""
        return time.time()

    def wait(self, seconds: float, stop: threading.Event) -> bool:
        """Sleep ``seconds`` of this clock's time or until ``stop`` is set.

        Returns True when stopped.
        """
        return stop.wait(max(0.0, seconds) / self.speed)


class FastClock(Clock):
    """Time that runs ``speed`` times faster than real time, from ``start``."""

    def __init__(self, speed: float, start: float | None = None) -> None:
        if speed <= 0:
            raise ValueError("clock speed must be positive")
        self.speed = float(speed)
        self._start = time.time() if start is None else float(start)
        self._t0 = time.monotonic()

    def time(self) -> float:
        return self._start + (time.monotonic() - self._t0) * self.speed


class ManualClock(Clock):
    """Time that moves only when told (``clock.now += 10``): for tests and
    benchmarks that drive the engine tick by tick."""

    def __init__(self, start: float = 1_000_000.0) -> None:
        self.now = float(start)

    def time(self) -> float:
        return self.now
