"""The connection to libvirtd: opening it, losing it, back-off, one run state.

While libvirtd cannot be reached (at start, or after it went away) every call
raises :class:`ConnectionLost` (a HypervisorUnavailable) with one constant
message per outage; one warning when the outage starts, one line when it is
connected again. Failed attempts back off exponentially (retry_min doubling
up to retry_max); the first attempt after a lost connection is at once. The
connection is opened outside the lock, so close() and libvirt's event thread
never wait for a libvirtd that does not answer.

The state is the shared :class:`~mom.hypervisors.runstate.RunState`, held by a
:class:`~mom.hypervisors.runstate.RunStateMachine` (``run``), which refuses a
move outside its table and tells listeners of every move; the interface reads
it rather than a set of flags.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import urllib.parse
from collections.abc import Callable
from typing import Any

import libvirt

from mom.hypervisors.base import GuestGone, HypervisorError, HypervisorUnavailable, NotSupported
from mom.hypervisors.runstate import RunState, RunStateMachine

log = logging.getLogger("mom.libvirt")

GONE_CODES = {libvirt.VIR_ERR_NO_DOMAIN}
UNSUPPORTED_CODES = {libvirt.VIR_ERR_NO_SUPPORT, libvirt.VIR_ERR_OPERATION_UNSUPPORTED,
                     libvirt.VIR_ERR_ARGUMENT_UNSUPPORTED}
CONNECTION_CODES = {libvirt.VIR_ERR_SYSTEM_ERROR, libvirt.VIR_ERR_INVALID_CONN, libvirt.VIR_ERR_NO_CONNECT,
                    libvirt.VIR_ERR_RPC, libvirt.VIR_ERR_AUTH_FAILED}
CONNECTION_DOMAINS = {libvirt.VIR_FROM_RPC, libvirt.VIR_FROM_REMOTE}


def _quiet_errors(ctx: Any, err: Any) -> None:
    """libvirt prints every error on stderr by default; MOM reports them itself."""


libvirt.registerErrorHandler(_quiet_errors, None)


class ConnectionLost(HypervisorUnavailable):
    """libvirtd cannot be reached (it went away or is restarting).

    The interface reconnects on later calls, with back-off. Every error of one
    outage carries the same message, so the engine records one fault."""


def default_pid_dir(uri: str) -> str | None:
    """Where libvirt's QEMU driver keeps NAME.pid for ``uri`` (None: no local pid file).

    A ``socket=DIR/libvirt-sock`` parameter names libvirtd's run directory: DIR/qemu."""
    parsed = urllib.parse.urlsplit(uri)
    socket_path = urllib.parse.parse_qs(parsed.query).get("socket")
    if parsed.scheme in ("qemu", "qemu+unix") and not parsed.hostname and socket_path:
        return os.path.join(os.path.dirname(socket_path[0]), "qemu")
    if uri.startswith("qemu:///system") or uri.startswith("qemu+unix:///system"):
        return "/run/libvirt/qemu"
    if uri.startswith("qemu:///session") or uri.startswith("qemu+unix:///session"):
        runtime = os.environ.get("XDG_RUNTIME_DIR") or os.path.expanduser("~/.cache")
        return os.path.join(runtime, "libvirt", "qemu", "run")
    return None


# Called outside the lock with a new connection and its URI when prepare() said events are
# wanted and possible: the event callback ids, None when the connection has no domain events.
Register = Callable[[Any, str], "list[int] | None"]
# Called with the lock held when a connection is up (conn, uri, callback ids or None),
# and when it is gone (None, "", None): the interface resets its per-connection caches.
Attached = Callable[[Any, str, "list[int] | None"], None]


class LibvirtConnection:
    """One libvirt connection, opened on demand and reopened after a loss."""

    def __init__(self, uri: str, *, opener: Callable[[str | None], Any] | None = None,
                 retry_min: float = 1.0, retry_max: float = 30.0,
                 monotonic: Callable[[], float] = time.monotonic,
                 prepare: Callable[[], bool] | None = None, register: Register | None = None,
                 attached: Attached | None = None,
                 release: Callable[[Any, list[int]], None] | None = None) -> None:
        self.uri = uri
        self.name = f"libvirt {uri or '(default URI)'}"
        self._opener = opener or libvirt.open
        self.retry_min, self.retry_max = retry_min, retry_max
        self._now = monotonic
        self._prepare = prepare or (lambda: False)
        self._register = register or (lambda conn, uri: None)
        self._attached = attached or (lambda conn, uri, ids: None)
        self._release = release or _close_quietly
        # Guards the state; never held while talking to libvirtd. The interface
        # guards its per-connection caches with it too.
        self.lock = threading.RLock()
        self.run = RunStateMachine(self.name)  # moved only with the lock held
        self.conn: Any = None
        self.connected_uri = ""
        self.connections = 0  # successful opens (1 = first connection; more = reconnections)
        self.callback_ids: list[int] = []
        self._outage: str | None = None  # the message of every error of the current outage
        self._backoff = retry_min
        self._next_attempt = 0.0

    @property
    def state(self) -> RunState:
        return self.run.state

    def _to(self, state: RunState) -> None:
        """Change the run state (lock held); RunStateError for a move outside its table."""
        self.run.move(state)

    # -- opening -------------------------------------------------------------------------
    def ensure(self) -> Any:
        """The live connection, opening one when needed. Raises ConnectionLost."""
        with self.lock:
            if self.state is RunState.CONNECTED:
                return self.conn
            if self.state is RunState.CLOSED:
                raise ConnectionLost(f"{self.name}: the interface is closed")
            if self.state is RunState.CONNECTING or self._now() < self._next_attempt:
                raise ConnectionLost(self._outage or f"{self.name}: connecting")
            self._to(RunState.CONNECTING)
        conn, events = self._open()
        try:
            uri = conn.getURI()
        except libvirt.libvirtError:
            uri = self.uri
        ids = self._register(conn, uri) if events else None
        with self.lock:
            # close() may have been called (another thread) while this connection was being opened;
            # mypy still holds the state this thread saw before it let go of the lock.
            if self.state is RunState.CLOSED:  # type: ignore[comparison-overlap]
                closed = True
            else:
                closed = False
                self._to(RunState.CONNECTED)
                self.conn, self.connected_uri, self.callback_ids = conn, uri, ids or []
                self.connections += 1
                self._backoff, self._next_attempt, self._outage = self.retry_min, 0.0, None
                self._attached(conn, uri, ids)
                first = self.connections == 1
        if closed:
            self._release(conn, ids or [])
            raise ConnectionLost(f"{self.name}: the interface is closed")
        log.info("libvirt: %s to %s (events %s)", "connected" if first else "reconnected", uri,
                 "on" if ids is not None else "off")
        return conn

    def _open(self) -> tuple[Any, bool]:
        """Open a connection (state CONNECTING, lock not held): (it, whether to register
        for events). Raises ConnectionLost."""
        try:
            events = self._prepare()  # libvirt's event loop must exist before the connection opens
            conn = self._opener(self.uri or None)
            if conn is None:  # old bindings returned None on failure
                raise libvirt.libvirtError("cannot open connection")
            return conn, events
        except libvirt.libvirtError as e:
            error = e.get_error_message() or str(e)
            with self.lock:
                if self.state is RunState.CONNECTING:
                    self._to(RunState.DISCONNECTED)
                self._next_attempt = self._now() + self._backoff
                self._backoff = min(self._backoff * 2, self.retry_max)
                message, new = self._begin_outage(f"cannot connect: {error}")
            if new:
                log.warning("%s", message)
            else:
                log.debug("libvirt: reconnection failed: %s", error)
            raise ConnectionLost(message) from None
        except BaseException:
            with self.lock:
                if self.state is RunState.CONNECTING:
                    self._to(RunState.DISCONNECTED)
            raise

    def _begin_outage(self, reason: str) -> tuple[str, bool]:
        """(The current outage's message, whether it starts now). Call with the lock held."""
        if self._outage is not None:
            return self._outage, False
        self._outage = f"{self.name}: not connected ({reason}); reconnecting in the background"
        return self._outage, True

    # -- losing ----------------------------------------------------------------------------
    def drop(self, conn: Any, why: str) -> str:
        """Forget a broken connection (the next call opens a new one); the outage's message."""
        with self.lock:
            if conn is None or self.conn is not conn or self.state is not RunState.CONNECTED:
                return self._outage or f"{self.name}: connection lost; reconnecting in the background"
            self._to(RunState.DISCONNECTED)
            self.conn, self.callback_ids = None, []
            self._attached(None, "", None)
            self._next_attempt = 0.0  # first reconnection at once, back-off after failures
            message, new = self._begin_outage(f"connection lost: {why}")
        if new:
            log.warning("%s", message)
        try:
            conn.close()
        except Exception:  # noqa: BLE001 - the connection is broken anyway
            pass
        return message

    def error(self, e: libvirt.libvirtError, what: str, conn: Any) -> HypervisorError:
        """Turn a libvirtError into the matching HypervisorError (and drop a broken connection)."""
        code, domain = e.get_error_code(), e.get_error_domain()
        message = f"{what}: {e.get_error_message() or e}"
        alive = True
        try:
            alive = bool(conn.isAlive())
        except Exception:  # noqa: BLE001
            alive = False
        if not alive or code in CONNECTION_CODES or (domain in CONNECTION_DOMAINS
                                                      and code != libvirt.VIR_ERR_NO_DOMAIN):
            if alive:
                # An RPC-level error on a connection that still answers: check before dropping it.
                try:
                    conn.getLibVersion()
                except libvirt.libvirtError:
                    alive = False
            if not alive:
                return ConnectionLost(self.drop(conn, e.get_error_message() or str(e)))
        if code in GONE_CODES or (code == libvirt.VIR_ERR_OPERATION_INVALID and "not running" in str(e)):
            return GuestGone(message)
        if code in UNSUPPORTED_CODES:
            return NotSupported(message)
        return HypervisorError(message)

    def close(self) -> None:
        """Close: later calls raise ConnectionLost. Returns promptly even when libvirtd
        does not answer (a connection still being opened is closed when it is done;
        the current one is released in the background)."""
        with self.lock:
            if self.state is RunState.CLOSED:
                return
            self._to(RunState.CLOSED)
            conn, self.conn = self.conn, None
            ids, self.callback_ids = self.callback_ids, []
            self._attached(None, "", None)
        if conn is None:
            return
        releaser = threading.Thread(target=self._release, args=(conn, ids), name="mom-libvirt-close", daemon=True)
        releaser.start()
        releaser.join(2.0)


def _close_quietly(conn: Any, ids: list[int]) -> None:
    try:
        conn.close()
    except Exception:  # noqa: BLE001 - closing anyway
        pass
