"""systemd's notification protocol (sd_notify(3)) for a ``Type=notify`` unit.

A notification is one datagram of newline-separated ``KEY=VALUE`` lines sent to
the AF_UNIX socket that systemd names in ``$NOTIFY_SOCKET`` (a path, or
``@name`` for the abstract namespace). momd sends ``READY=1`` once it serves,
``WATCHDOG=1`` while its engine makes progress (``$WATCHDOG_USEC``) and
``STOPPING=1`` when it stops. Without ``$NOTIFY_SOCKET`` (started by hand, or by
another service manager) every call does nothing.

The protocol is written here rather than taken from python3-systemd: it is a
few lines, and that binding is a C extension a pip install would have to build.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable, MutableMapping

from mom.core.faults import FaultKey, FaultLog

log = logging.getLogger("mom.sdnotify")
NOTIFY_FAULT = FaultKey("systemd", "notify")  # renders "systemd notify: ..."


class Notifier:
    """Sends notifications to one socket; a failure is logged once (and its end
    once), never raised."""

    def __init__(self, address: str | None) -> None:
        self.address = address
        self._sock: socket.socket | None = None
        # Once: a manager that went away must not fill the log at every watchdog ping.
        self.faults = FaultLog(log, time.monotonic)

    @classmethod
    def from_environment(cls, environ: MutableMapping[str, str] | None = None) -> Notifier:
        """The notifier systemd asked for, removing NOTIFY_SOCKET from the environment
        so that nothing momd starts later takes the notifications for its own."""
        env = os.environ if environ is None else environ
        return cls(env.pop("NOTIFY_SOCKET", None) or None)

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def _target(self) -> str | bytes:
        assert self.address is not None
        if self.address.startswith("@"):  # abstract namespace: a leading NUL byte
            return b"\0" + self.address[1:].encode()
        return self.address

    def send(self, *lines: str) -> bool:
        """Send the lines as one notification; True when it was sent."""
        if self.address is None:
            return False
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._sock.sendto("\n".join(lines).encode(), self._target())
        except OSError as e:
            self.faults.report(NOTIFY_FAULT, f"cannot notify systemd at {self.address}: {e.strerror or e}")
            return False
        self.faults.clear(NOTIFY_FAULT)
        return True

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def watchdog_timeout(environ: MutableMapping[str, str] | None = None, pid: int | None = None) -> float | None:
    """The watchdog timeout systemd set (WatchdogSec=) in seconds, or None when there is none
    or it is meant for another process (WATCHDOG_PID). The variables are removed, as
    sd_watchdog_enabled(3) does, so a child process never pings for momd."""
    env = os.environ if environ is None else environ
    usec, owner = env.pop("WATCHDOG_USEC", ""), env.pop("WATCHDOG_PID", "")
    if owner and owner != str(os.getpid() if pid is None else pid):
        return None
    try:
        timeout = int(usec) / 1e6
    except ValueError:
        return None
    return timeout if timeout > 0 else None


class Watchdog:
    """Pings systemd's watchdog (every half timeout) while the engine shows progress.

    ``progress()`` is the monotonic time of the engine's last finished step. When it
    is older than ``stall_after`` seconds the engine is stuck: the pings stop (logged
    once) and systemd restarts momd after WatchdogSec. A busy main thread alone never
    stops them, and a failing step still counts as progress: a failing collector is a
    fault shown in health, not a reason to restart.
    """

    def __init__(self, notifier: Notifier, timeout: float, progress: Callable[[], float],
                 stall_after: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.notifier = notifier
        self.interval = timeout / 2
        self.progress = progress
        self.stall_after = stall_after
        self.clock = clock
        self.stalled = False
        self._last_ping = -float("inf")

    def poll(self) -> None:
        """Called often (the main loop's every wake-up); pings when one is due."""
        now = self.clock()
        quiet = now - self.progress()
        if quiet > self.stall_after:
            if not self.stalled:
                log.error("the engine has finished no step for %.0f s: no longer answering systemd's watchdog, "
                          "which restarts momd", quiet)
                self.stalled = True
            return
        if self.stalled:
            log.info("the engine makes progress again; answering systemd's watchdog")
            self.stalled = False
        if now - self._last_ping >= self.interval:
            self.notifier.send("WATCHDOG=1")
            self._last_ping = now
