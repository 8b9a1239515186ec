"""The background thread that keeps the vdsm connection up: it connects, and
reconnects after a loss, with exponential back-off (0.5 s doubling up to 30 s
by default), and sleeps while the connection is up until woken.

What to do next, how to connect and what to log are its owner's, the
client's (:class:`Owner`); this module is the loop, its back-off and the outage's
bookkeeping (:class:`Outage`: each outage is warned of once).
"""

from __future__ import annotations

import enum
import threading
import time
from typing import Protocol

from mom.hypervisors.vdsm.errors import VdsmError

BACKOFF_INITIAL = 0.5
BACKOFF_MAX = 30.0


class Step(enum.Enum):
    """What the connector does next."""

    STOP = "stop"  # closed: the thread ends
    SLEEP = "sleep"  # connected: wait until woken (a loss, close)
    CONNECT = "connect"  # make one attempt


class Owner(Protocol):
    """The client, as the connector sees it."""

    def next_step(self) -> Step: ...

    def connect_once(self) -> None:
        """One attempt; raises VdsmError naming why it failed."""

    def attempt_failed(self, reason: str, retry_in: float) -> bool:
        """Note (and log) a failed attempt; False when the client is closed."""

    def attempt_succeeded(self) -> None: ...


class Connector:
    """One daemon thread running :meth:`run` for its owner."""

    def __init__(self, owner: Owner, backoff_initial: float = BACKOFF_INITIAL,
                 backoff_max: float = BACKOFF_MAX, name: str = "vdsm-connect") -> None:
        self.owner = owner
        self.backoff_initial, self.backoff_max = backoff_initial, backoff_max
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self.run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def wake(self) -> None:
        """Cut a sleep or a back-off short (a loss, close)."""
        self._wake.set()

    def join(self, timeout: float) -> None:
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def run(self) -> None:
        delay = self.backoff_initial
        while True:
            step = self.owner.next_step()
            if step is Step.STOP:
                return
            if step is Step.SLEEP:
                self._wake.wait()
                self._wake.clear()
                continue
            try:
                self.owner.connect_once()
            except VdsmError as e:
                if not self.owner.attempt_failed(str(e), delay):
                    return
                if self._wake.wait(delay):
                    self._wake.clear()
                delay = min(delay * 2, self.backoff_max)
                continue
            delay = self.backoff_initial
            self.owner.attempt_succeeded()


class Outage:
    """When the current outage began and whether its warning is out. Not locked:
    its owner calls it under its own lock."""

    def __init__(self) -> None:
        self.since: float | None = None  # monotonic start of the current outage
        self.warned = False

    def note(self) -> bool:
        """A failure: starts an outage if none is on. True the first time in an outage
        (its one warning is due)."""
        if self.since is None:
            self.since = time.monotonic()
            self.warned = False
        first = not self.warned
        self.warned = True
        return first

    def end(self) -> float | None:
        """The connection is up: how long the outage lasted, None if there was none."""
        since, self.since = self.since, None
        self.warned = False
        return None if since is None else time.monotonic() - since
