"""A small JSON-RPC 2.0 client for vdsm (the oVirt host agent), over STOMP 1.2
on TLS with vdsm's PKI, built on stomp.py.

:class:`VdsmClient` puts together the parts, each in its module: the PKI files
and the naming of a failure's cause (:mod:`.tls`), one STOMP connection
(:mod:`.link`), the requests and their answers (:mod:`.calls`), the connector
thread and its back-off (:mod:`.connector`), and the errors (:mod:`.errors`).

A background thread connects and reconnects with back-off. Only the very
first call waits for a connection, briefly (``first_wait``: 2 s by default,
never more than the request timeout); without one, :meth:`VdsmClient.call`
fails at once with :class:`VdsmUnavailable` and one message for the whole
outage (:attr:`VdsmClient.down_message`). A call waits at most the request
timeout for its answer; one that gets none marks the connection gone (a vdsm
that stops answering without closing it would otherwise hold every later call
for the whole timeout): the calls in flight on it fail, its socket is shut
down and the background thread reconnects.

The client's state is the shared :class:`~mom.hypervisors.runstate.RunState`
in a :class:`~mom.hypervisors.runstate.RunStateMachine` (:attr:`VdsmClient.run`),
moved only along its transitions. Each outage is logged once (a warning naming
the reason) and its end once (info). stomp.py's own log records are kept out of
MOM's log unless MOM logs at debug level (:mod:`.stomp_compat`, installed when
the client starts, not at import).
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable
from typing import Any

from mom.hypervisors.runstate import RunState, RunStateMachine
from mom.hypervisors.settings import VDSM_FIRST_WAIT
from mom.hypervisors.vdsm import stomp_compat
from mom.hypervisors.vdsm.calls import REQUEST_QUEUE, PendingCalls
from mom.hypervisors.vdsm.connector import BACKOFF_INITIAL, BACKOFF_MAX, Connector, Outage, Step
from mom.hypervisors.vdsm.errors import VdsmCallError, VdsmError, VdsmUnavailable
from mom.hypervisors.vdsm.link import Link, LinkEvents, LinkListener, LinkSettings, shut
from mom.hypervisors.vdsm.tls import TlsFiles

log = logging.getLogger("mom.vdsm")

HEARTBEAT_MS = 5000  # both ways; vdsm mirrors the wish, so a silent or half-closed vdsm is noticed
FIRST_WAIT = VDSM_FIRST_WAIT  # the first call waits this long (at most) for the first connection


class VdsmClient:
    """JSON-RPC calls to vdsm over one STOMP connection, kept up in the background.

    Raises VdsmConfigError at construction when the key, certificate or CA
    cannot be loaded. :meth:`start` begins connecting; :meth:`close` stops.
    """

    def __init__(self, host: str, port: int, key_path: str, cert_path: str, ca_path: str, *,
                 timeout: float = 10.0, heartbeat_ms: int = HEARTBEAT_MS,
                 backoff_initial: float = BACKOFF_INITIAL, backoff_max: float = BACKOFF_MAX,
                 first_wait: float = FIRST_WAIT, on_connect: Callable[[], None] | None = None) -> None:
        self.host, self.port = host, int(port)
        self.files = TlsFiles(key_path, cert_path, ca_path)
        self.files.check()
        self.timeout = float(timeout)
        self.heartbeat_ms = int(heartbeat_ms)
        self.backoff_initial, self.backoff_max = backoff_initial, backoff_max
        self.first_wait = max(0.0, min(float(first_wait), self.timeout))
        self.on_connect = on_connect
        self.where = f"{host}:{port}"
        self._lock = threading.Lock()  # the run state, the connection and the outage
        self._conn: Any = None  # the stomp connection while up
        self.calls = PendingCalls(self.where, self.down_message, self._abandon)
        self._events = LinkEvents(message=self._message, lost=self._lost, error=self._stomp_error)
        self._reply_to = str(uuid.uuid4())
        self.run = RunStateMachine(f"vdsm client {self.where}")  # moved only with the lock held
        self._up = threading.Event()  # set exactly while CONNECTED: what a first call waits for
        self.run.listen(self._track_up)
        self._outage = Outage()
        self.connections = 0  # successful connections so far
        self._connector = Connector(self, backoff_initial, backoff_max)

    def _track_up(self, old: RunState, new: RunState) -> None:
        if new is RunState.CONNECTED:
            self._up.set()
        else:
            self._up.clear()

    # -- public ---------------------------------------------------------------------
    @property
    def state(self) -> RunState:
        return self.run.state

    @property
    def connected(self) -> bool:
        return self.run.state is RunState.CONNECTED

    @property
    def closed(self) -> bool:
        """close() was called (final)."""
        return self.run.state is RunState.CLOSED

    @property
    def connecting_in_background(self) -> bool:
        """Whether the connector thread runs (from the first call until close)."""
        return self._connector.alive

    @property
    def down_message(self) -> str:
        """One message for the whole outage: callers log each distinct message once."""
        return f"no connection to vdsm at {self.where} (reconnecting in the background)"

    def start(self, wait: float = 0.0) -> None:
        """Start connecting in the background (once); wait up to ``wait`` seconds
        for the first connection."""
        with self._lock:
            start = self.run.state is RunState.IDLE
            if start:
                self.run.move(RunState.CONNECTING)
        if start:
            stomp_compat.install_log_filter()  # stomp.py's patches: on first use, not at import
            self._connector.start()
        if wait > 0:
            self._up.wait(wait)

    def wait_connected(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for a live connection; whether there is one."""
        return self._up.wait(timeout)

    def call(self, method: str, params: dict[str, Any] | None = None, timeout: float | None = None) -> Any:
        """Call a vdsm method with named params; return its result.

        Raises VdsmUnavailable (no connection, or it was lost during the call),
        VdsmTimeout (no answer in time: the connection is dropped too),
        VdsmCallError. Only the first call waits for a connection, at most
        ``first_wait`` seconds; later calls without one fail at once."""
        if self.run.state is RunState.IDLE:
            self.start(wait=self.first_wait)
        with self._lock:
            conn, gen = self._conn, self.calls.generation
            if conn is None or self.run.state is not RunState.CONNECTED:
                raise VdsmUnavailable(self.down_message)
        return self._call_on(conn, gen, method, params or {}, timeout)

    def close(self) -> None:
        with self._lock:
            if self.run.state is not RunState.CLOSED:
                self.run.move(RunState.CLOSED)
            conn, self._conn = self._conn, None
            self.calls.renew()
        self._connector.wake()
        if conn is not None:
            shut(conn)
        self._connector.join(5)

    # -- calls and the connection's events -------------------------------------------------
    def _call_on(self, conn: Any, gen: int, method: str, params: dict[str, Any], timeout: float | None) -> Any:
        def send(body: str) -> None:
            conn.send(destination=REQUEST_QUEUE, body=body, content_type="application/json",
                      headers={"reply-to": self._reply_to})
        return self.calls.call(send, gen, method, params, self.timeout if timeout is None else timeout)

    def _message(self, gen: int, body: Any) -> None:
        self.calls.deliver(body)

    def _lost(self, gen: int) -> None:
        with self._lock:
            if gen != self.calls.generation or self.run.state is RunState.CLOSED:
                return
            self.calls.fail_all()  # they all belong to this connection
            if self.run.state is not RunState.CONNECTED:
                return  # still opening: _connect_once sees the listener's closed flag
            first = self._go_down_locked()
        if first:
            log.warning("lost the connection to vdsm at %s; reconnecting in the background", self.where)
        self._connector.wake()

    def _abandon(self, gen: int, why: str) -> None:
        """Give up the connection of generation ``gen`` (a call got no answer):
        it is gone from now on, its other calls fail, the connector reopens it.
        A connection still being opened is left to _connect_once."""
        with self._lock:
            if gen != self.calls.generation or self._conn is None or self.run.state is not RunState.CONNECTED:
                return
            conn = self._conn
            first = self._go_down_locked()
        shut(conn)
        if first:
            log.warning("lost the connection to vdsm at %s (%s); reconnecting in the background", self.where, why)
        else:
            log.debug("dropping the connection to vdsm at %s: %s", self.where, why)
        self._connector.wake()

    def _go_down_locked(self) -> bool:
        """The live connection is gone: its calls fail; DISCONNECTED. True when the
        outage's one warning is due."""
        self._conn = None
        self.calls.renew()
        self.run.move(RunState.DISCONNECTED)
        return self._outage.note()

    def _stomp_error(self, gen: int, message: str) -> None:
        log.warning("vdsm at %s: %s", self.where, message)

    # -- the connector's side (connector.Owner) ----------------------------------------------
    def next_step(self) -> Step:
        with self._lock:
            if self.run.state is RunState.CLOSED:
                return Step.STOP
            if self.run.state is RunState.CONNECTED:
                return Step.SLEEP
            if self.run.state is RunState.DISCONNECTED:
                self.run.move(RunState.CONNECTING)
            return Step.CONNECT

    def attempt_failed(self, reason: str, retry_in: float) -> bool:
        with self._lock:
            if self.run.state is RunState.CLOSED:  # close() from another thread during the attempt
                return False
            if self.run.state is RunState.CONNECTING:
                self.run.move(RunState.DISCONNECTED)
            first = self._outage.note()
            ever_connected = self.connections > 0
        if not first:
            log.debug("vdsm at %s still unreachable: %s; next attempt in %.1f s", self.where, reason, retry_in)
        elif ever_connected:
            log.warning("cannot reconnect to vdsm at %s: %s; retrying in the background", self.where, reason)
        else:
            log.warning("cannot connect to vdsm at %s: %s; retrying in the background (back-off up to %g s)",
                        self.where, reason, self.backoff_max)
        return True

    def attempt_succeeded(self) -> None:
        with self._lock:
            took = self._outage.end()
            was_connected = self.connections > 1  # this connection is counted already
        if was_connected or took is not None:
            log.info("connected to vdsm at %s again after %.1f s", self.where, took or 0.0)
        else:
            log.info("connected to vdsm at %s", self.where)

    def connect_once(self) -> None:
        """Open one connection: TCP, TLS, CONNECT, SUBSCRIBE, then Host.ping2. Raises VdsmError."""
        with self._lock:
            gen = self.calls.renew()
        link = Link(LinkSettings(self.host, self.port, self.files, self.timeout, self.heartbeat_ms,
                                 self._reply_to), LinkListener(self._events, gen))
        link.open(closing=lambda: self.closed)
        conn = link.conn
        with self._lock:
            closed = self.run.state is RunState.CLOSED or gen != self.calls.generation
            if not closed:
                self._conn = conn
        if closed:
            shut(conn)
            raise VdsmUnavailable("closed")
        try:
            self._call_on(conn, gen, "Host.ping2", {}, self.timeout)
        except VdsmCallError as e:
            # vdsm answers (e.g. "recovering from crash or still initializing"):
            # the transport works; the calls will say what vdsm thinks.
            log.debug("vdsm Host.ping2: %s", e)
        except VdsmError as e:
            with self._lock:
                if self.calls.generation == gen:
                    self._conn = None
                    self.calls.renew()
            shut(conn)
            raise VdsmUnavailable(link.cause() if link.listener.closed.is_set() else f"Host.ping2: {e}") from None
        if self.on_connect is not None:
            try:
                self.on_connect()  # before calls can go out on the new connection
            except Exception:
                log.exception("vdsm on_connect callback failed")
        with self._lock:
            if gen != self.calls.generation or self.run.state is not RunState.CONNECTING:
                raise VdsmUnavailable("connection lost right after it was opened")
            # Counted before it is marked up: whoever sees ``connected`` (read without
            # the lock) must also see this connection in ``connections``.
            self.connections += 1
            self.run.move(RunState.CONNECTED)
