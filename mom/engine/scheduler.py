"""The scheduler: one thread that owns time and runs the engine's steps when due.

Steps run in pipeline order (discovery, host, guests, policy), each on its
interval of the engine's clock. A reload requested from outside (SIGHUP, RPC)
runs on this thread between steps; requests made before it runs are one
reload, and reloads run at most once per RELOAD_MIN_INTERVAL real seconds, so a
storm of signals cannot starve the ticks.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from mom.core.clock import Clock

RELOAD_MIN_INTERVAL = 1.0  # real seconds between two policy reloads, however many are requested

Step = tuple[str, float]  # (name, interval in clock seconds)


class Scheduler:
    def __init__(self, clock: Clock, steps: list[Step], run_step: Callable[[str], None]) -> None:
        self.clock = clock
        self.steps = steps
        self.run_step = run_step
        self.stopping = False
        self._event = threading.Event()
        self._reload: Callable[[], None] | None = None
        self._next_reload = 0.0  # time.monotonic() before which a requested reload waits
        self._discover_soon = False

    def stop(self) -> None:
        self.stopping = True
        self._event.set()

    def discover_soon(self) -> None:
        """Run discovery at the next wake-up (the hypervisor saw a guest start or stop)."""
        self._discover_soon = True
        self._event.set()

    def request(self, action: Callable[[], None]) -> None:
        """Run ``action`` on the scheduler thread soon; it replaces a request not run yet."""
        self._reload = action
        self._event.set()  # cheap; the scheduler runs the reload when its turn comes

    def run(self, guarded: Callable[[str, Callable[[], None]], None]) -> None:
        """Run until stop(). guarded(name, fn) runs a reload as a step is run."""
        now = self.clock.time()
        due = {name: now for name, _ in self.steps}
        while not self.stopping:
            now = self.clock.time()
            for name, interval in self.steps:
                if now >= due[name] and not self.stopping:
                    self.run_step(name)
                    due[name] = max(due[name] + interval, now + interval * 0.5)
            if self.stopping:
                break
            if self._reload is not None and time.monotonic() >= self._next_reload:
                # Requests that came meanwhile are one reload: a SIGHUP storm cannot starve the ticks.
                action, self._reload = self._reload, None
                self._next_reload = time.monotonic() + RELOAD_MIN_INTERVAL
                guarded("reload", action)
            sleep = min(due.values()) - self.clock.time()
            if self._reload is not None:  # a reload is waiting for its turn
                sleep = min(sleep, (self._next_reload - time.monotonic()) * self.clock.speed)
            if self.clock.wait(sleep, self._event):
                self._event.clear()
                if self._discover_soon:
                    self._discover_soon = False
                    due["discovery"] = self.clock.time()
