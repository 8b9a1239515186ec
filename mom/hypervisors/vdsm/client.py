"""A small JSON-RPC 2.0 client for vdsm, over STOMP 1.2 on TLS, built on stomp.py.

vdsm (the oVirt host agent) answers JSON-RPC requests sent as STOMP SEND frames
to ``jms.topic.vdsm_requests`` with ``reply-to`` naming a destination the client
subscribed to; the answers come back as MESSAGE frames on that subscription.
The TLS connection uses vdsm's PKI: a client key and certificate and the CA
that signed vdsm's certificate. Like vdsm's own client, the server certificate
is checked against that CA but not against a host name (an oVirt host's
certificate names the host, while MOM connects to 127.0.0.1).

Connection handling: a background thread connects, and reconnects after a
loss, with exponential back-off (0.5 s doubling up to 30 s). The very first
call starts that thread and waits briefly for the first connection (at most
``first_wait``: 2 s by default, never more than the request timeout; the vdsm
interface keeps it under a quarter of momd's hypervisor call deadline), so
momd's first tick finds a vdsm that is up. After that, while there is no
connection, :meth:`VdsmClient.call` fails at once with
:class:`VdsmUnavailable`, always with the same message (:attr:`down_message`),
and never waits for a reconnection; a call on a live connection waits at most
the request timeout for its answer. A call that gets no answer in time marks
the connection gone (a vdsm that stops answering without closing it would
otherwise hold every later call for the whole timeout): the calls in flight on
it fail, its socket is shut down and the background thread reconnects.

The client's state is one :class:`RunState`, changed only along
:data:`TRANSITIONS`. Each outage is logged once (a warning naming the reason)
and its end once (info). stomp.py's own log records are kept out of MOM's log
unless MOM logs at debug level (:mod:`.stomp_compat`, installed when the
client starts, not at import).
"""

from __future__ import annotations

import enum
import json
import logging
import socket
import ssl
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import stomp
from stomp.exception import StompException

from mom.hypervisors.base import HypervisorError
from mom.hypervisors.settings import VDSM_FIRST_WAIT
from mom.hypervisors.vdsm import stomp_compat

log = logging.getLogger("mom.vdsm")

REQUEST_QUEUE = "jms.topic.vdsm_requests"
BACKOFF_INITIAL = 0.5
BACKOFF_MAX = 30.0
HEARTBEAT_MS = 5000  # both ways; vdsm mirrors the wish, so a silent or half-closed vdsm is noticed
FIRST_WAIT = VDSM_FIRST_WAIT  # the first call waits this long (at most) for the first connection

# stomp.py builds its TLS context from ``ssl_version``. ssl.PROTOCOL_TLS gives a
# context that verifies the peer against the CA (stomp.py sets CERT_REQUIRED)
# without matching a host name, as vdsm's own client does. (PROTOCOL_TLS_CLIENT
# would insist on the host name, which an oVirt host's certificate does not
# give for 127.0.0.1.)


class VdsmError(HypervisorError):
    """A vdsm call failed (the client's own errors; the interface turns them into
    the HypervisorError the engine knows)."""


class VdsmUnavailable(VdsmError):
    """No connection to vdsm (down, unreachable, TLS refused, lost mid-call)."""


class VdsmTimeout(VdsmUnavailable):
    """vdsm did not answer in time; the connection is dropped and reopened."""


class VdsmCallError(VdsmError):
    """vdsm answered with a JSON-RPC error."""

    def __init__(self, method: str, code: Any, message: str) -> None:
        super().__init__(f"{method}: {message} (code {code})")
        self.method = method
        self.code = code
        self.message = message


class VdsmConfigError(VdsmError):
    """The key, certificate or CA files cannot be used: a start-up error. Its
    message is the operator's one line ("[vdsm] ca-cert-file PATH: ...")."""


class RunState(enum.Enum):
    """Where the client is (as qemu.qmp's ``Runstate``). IDLE: built, nothing
    dialled (the first call starts the connector). CONNECTING: the connector is
    opening a connection. CONNECTED: calls go out. DISCONNECTED: an outage;
    the connector retries with back-off and calls fail at once. CLOSED: final."""

    IDLE = "idle"
    CONNECTING = "connecting"
    CONNECTED = "connected"
    DISCONNECTED = "disconnected"
    CLOSED = "closed"


TRANSITIONS: dict[RunState, frozenset[RunState]] = {
    RunState.IDLE: frozenset({RunState.CONNECTING, RunState.CLOSED}),
    RunState.CONNECTING: frozenset({RunState.CONNECTED, RunState.DISCONNECTED, RunState.CLOSED}),
    RunState.CONNECTED: frozenset({RunState.DISCONNECTED, RunState.CLOSED}),
    RunState.DISCONNECTED: frozenset({RunState.CONNECTING, RunState.CLOSED}),
    RunState.CLOSED: frozenset(),
}


def describe_error(error: BaseException | None, ca_path: str, cert_path: str) -> str:
    """One line on why a connection attempt failed."""
    if error is None:
        return "connection failed"
    if isinstance(error, ssl.SSLCertVerificationError):
        return (f"TLS: vdsm's certificate refused (certificate verify failed: "
                f"{error.verify_message or error.reason}; checked against ca-cert-file {ca_path})")
    if isinstance(error, (ssl.SSLEOFError, ssl.SSLZeroReturnError)):
        # With TLS 1.3 vdsm checks MOM's certificate after the client's side of the
        # handshake; its alert may be lost when it closes the connection.
        return (f"TLS: vdsm closed the connection during the handshake; does vdsm trust MOM's "
                f"certificate (cert-file {cert_path})?")
    if isinstance(error, ssl.SSLError):
        reason = error.reason or str(error)
        if "CERTIFICATE" in str(reason).upper() or "UNKNOWN_CA" in str(reason).upper():
            return f"TLS: vdsm refused MOM's certificate ({reason}; cert-file {cert_path})"
        return f"TLS handshake failed: {reason}"
    if isinstance(error, ConnectionRefusedError):
        return "connection refused"
    if isinstance(error, socket.timeout):
        return "connection timed out"
    if isinstance(error, OSError):
        return error.strerror or str(error) or type(error).__name__
    return str(error) or type(error).__name__


class _Pending:
    __slots__ = ("event", "response", "lost")

    def __init__(self) -> None:
        self.event = threading.Event()
        self.response: dict[str, Any] | None = None
        self.lost = False


class _Listener(stomp.ConnectionListener):  # type: ignore[misc]  # stomp-py ships no type information
    """Events of one STOMP connection, handed to the client with its generation."""

    def __init__(self, client: VdsmClient, gen: int) -> None:
        self.client = client
        self.gen = gen
        self.connected = threading.Event()
        self.closed = threading.Event()
        self.error: str | None = None

    def on_connected(self, frame: Any) -> None:
        self.connected.set()

    def on_error(self, frame: Any) -> None:
        message = frame.headers.get("message") or (frame.body or "").strip() or "ERROR frame"
        self.error = f"vdsm sent a STOMP ERROR: {message}"
        if self.connected.is_set():
            self.client._stomp_error(self.gen, self.error)

    def on_message(self, frame: Any) -> None:
        self.client._message(self.gen, frame.body)

    def on_disconnected(self) -> None:
        self.closed.set()
        self.client._lost(self.gen)


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
        self.key_path, self.cert_path, self.ca_path = key_path, cert_path, ca_path
        self.timeout = float(timeout)
        self.heartbeat_ms = int(heartbeat_ms)
        self.backoff_initial, self.backoff_max = backoff_initial, backoff_max
        self.first_wait = max(0.0, min(float(first_wait), self.timeout))
        self.on_connect = on_connect
        self.where = f"{host}:{port}"
        self._check_files()
        self._lock = threading.Lock()
        self._conn: Any = None  # the stomp connection while up
        self._gen = 0
        self._pending: dict[str, _Pending] = {}
        self._reply_to = str(uuid.uuid4())
        self.state = RunState.IDLE
        self._up = threading.Event()  # set exactly while CONNECTED: what a first call waits for
        self._wake = threading.Event()
        self._outage_since: float | None = None  # monotonic start of the current outage
        self._outage_logged = False  # its warning is out
        self.connections = 0  # successful connections so far
        self._thread = threading.Thread(target=self._run, name="vdsm-connect", daemon=True)

    def _to(self, state: RunState) -> None:
        """Change the run state (lock held). A transition outside TRANSITIONS is a bug."""
        if state not in TRANSITIONS[self.state]:
            raise RuntimeError(f"vdsm client: no transition from {self.state.value} to {state.value}")
        self.state = state
        if state is RunState.CONNECTED:
            self._up.set()
        else:
            self._up.clear()

    # -- public ---------------------------------------------------------------------
    def start(self, wait: float = 0.0) -> None:
        """Start connecting in the background (once); wait up to ``wait`` seconds
        for the first connection."""
        with self._lock:
            start = self.state is RunState.IDLE
            if start:
                self._to(RunState.CONNECTING)
        if start:
            stomp_compat.install_log_filter()  # stomp.py's patches: on first use, not at import
            self._thread.start()
        if wait > 0:
            self._up.wait(wait)

    @property
    def connected(self) -> bool:
        return self.state is RunState.CONNECTED

    @property
    def down_message(self) -> str:
        """One message for the whole outage: callers log each distinct message once."""
        return f"no connection to vdsm at {self.where} (reconnecting in the background)"

    def call(self, method: str, params: dict[str, Any] | None = None, timeout: float | None = None) -> Any:
        """Call a vdsm method with named params; return its result.

        Raises VdsmUnavailable (no connection, or it was lost during the call),
        VdsmTimeout (no answer in time: the connection is dropped too),
        VdsmCallError. Only the first call waits for a connection, at most
        ``first_wait`` seconds; later calls without one fail at once."""
        if self.state is RunState.IDLE:
            self.start(wait=self.first_wait)
        with self._lock:
            conn, gen = self._conn, self._gen
            if conn is None or self.state is not RunState.CONNECTED:
                raise VdsmUnavailable(self.down_message)
        return self._call_on(conn, gen, method, params or {}, timeout)

    def close(self) -> None:
        with self._lock:
            if self.state is not RunState.CLOSED:
                self._to(RunState.CLOSED)
            conn, self._conn = self._conn, None
            self._gen += 1
            self._fail_pending_locked()
        self._wake.set()
        if conn is not None:
            self._shut(conn)
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(5)

    # -- calls ------------------------------------------------------------------------
    def _call_on(self, conn: Any, gen: int, method: str, params: dict[str, Any], timeout: float | None) -> Any:
        rid = str(uuid.uuid4())
        pending = _Pending()
        body = json.dumps({"jsonrpc": "2.0", "method": method, "params": params, "id": rid})
        with self._lock:
            if gen != self._gen:
                raise VdsmUnavailable(self.down_message)
            self._pending[rid] = pending
        try:
            conn.send(destination=REQUEST_QUEUE, body=body, content_type="application/json",
                      headers={"reply-to": self._reply_to})
        except (StompException, OSError, AttributeError, ValueError) as e:
            with self._lock:
                self._pending.pop(rid, None)
            log.debug("cannot send %s to vdsm at %s: %s", method, self.where, e or type(e).__name__)
            raise VdsmUnavailable(self.down_message) from None
        wait = self.timeout if timeout is None else timeout
        if not pending.event.wait(wait):
            with self._lock:
                self._pending.pop(rid, None)
            # A connection that leaves a request unanswered may be half-dead (a
            # vdsm that stopped without closing it): start afresh.
            self._abandon(gen, f"no answer to {method} within {wait:g} s")
            raise VdsmTimeout(f"vdsm at {self.where} did not answer {method} within {wait:g} s")
        if pending.lost or pending.response is None:
            log.debug("the connection to vdsm at %s was lost during %s", self.where, method)
            raise VdsmUnavailable(self.down_message)
        response = pending.response
        error = response.get("error")
        if error is not None:
            if isinstance(error, dict):
                raise VdsmCallError(method, error.get("code"), str(error.get("message", error)))
            raise VdsmCallError(method, None, str(error))
        return response.get("result")

    def _message(self, gen: int, body: Any) -> None:
        if isinstance(body, bytes):
            body = body.decode("utf-8", "replace")
        try:
            data = json.loads(body)
        except (TypeError, ValueError):
            log.debug("vdsm sent a message that is not JSON: %.200r", body)
            return
        for item in data if isinstance(data, list) else [data]:
            if not isinstance(item, dict) or item.get("id") is None:
                continue  # an event (notification): not ours to handle
            with self._lock:
                pending = self._pending.pop(str(item["id"]), None)
            if pending is not None:
                pending.response = item
                pending.event.set()

    def _fail_pending_locked(self) -> None:
        for pending in self._pending.values():
            pending.lost = True
            pending.event.set()
        self._pending.clear()

    # -- connection state ---------------------------------------------------------------
    def _lost(self, gen: int) -> None:
        with self._lock:
            if gen != self._gen or self.state is RunState.CLOSED:
                return
            self._fail_pending_locked()  # they all belong to this connection
            if self.state is not RunState.CONNECTED:
                return  # still opening: _connect_once sees the listener's closed flag
            self._conn = None
            self._gen += 1
            self._to(RunState.DISCONNECTED)
            self._start_outage_locked()
            first = not self._outage_logged
            self._outage_logged = True
        if first:
            log.warning("lost the connection to vdsm at %s; reconnecting in the background", self.where)
        self._wake.set()

    def _abandon(self, gen: int, why: str) -> None:
        """Give up the connection of generation ``gen`` (a call got no answer):
        it is gone from now on, its other calls fail, the connector reopens it.
        A connection still being opened is left to _connect_once."""
        with self._lock:
            if gen != self._gen or self._conn is None or self.state is not RunState.CONNECTED:
                return
            conn, self._conn = self._conn, None
            self._gen += 1
            self._to(RunState.DISCONNECTED)
            self._fail_pending_locked()
            self._start_outage_locked()
            first = not self._outage_logged
            self._outage_logged = True
        self._shut(conn)
        if first:
            log.warning("lost the connection to vdsm at %s (%s); reconnecting in the background", self.where, why)
        else:
            log.debug("dropping the connection to vdsm at %s: %s", self.where, why)
        self._wake.set()

    def _stomp_error(self, gen: int, message: str) -> None:
        log.warning("vdsm at %s: %s", self.where, message)

    def _start_outage_locked(self) -> None:
        if self._outage_since is None:
            self._outage_since = time.monotonic()
            self._outage_logged = False

    @staticmethod
    def _shut(conn: Any) -> None:
        """End a connection at once, whatever the peer does: stop stomp.py's
        receiver loop and shut the socket down at the OS level, which wakes that
        loop; it then closes the socket and ends, and with it the heart-beat
        thread. (stomp.py's own disconnect_socket does a TLS close handshake,
        which can wait for ever on a hung vdsm.)"""
        transport = getattr(conn, "transport", None)
        if transport is None:
            return
        transport.running = False  # checked by the receiver loop, which does not notice a TLS EOF itself
        sock = getattr(transport, "socket", None)
        if sock is None:
            return
        try:
            socket.socket.shutdown(sock, socket.SHUT_RDWR)  # not the TLS-level shutdown of SSLSocket
        except (OSError, ValueError, TypeError) as e:  # already closed, or never connected
            log.debug("shutting down the vdsm connection: %s", e)

    # -- the connector thread -------------------------------------------------------------
    def _run(self) -> None:
        delay = self.backoff_initial
        while True:
            with self._lock:
                if self.state is RunState.CLOSED:
                    return
                up = self.state is RunState.CONNECTED
                if self.state is RunState.DISCONNECTED:
                    self._to(RunState.CONNECTING)
            if up:
                self._wake.wait()
                self._wake.clear()
                continue
            try:
                self._connect_once()
            except VdsmError as e:
                reason = str(e)
                with self._lock:
                    # close() from another thread during the attempt; mypy holds the state seen before.
                    if self.state is RunState.CLOSED:  # type: ignore[comparison-overlap]
                        return
                    if self.state is RunState.CONNECTING:
                        self._to(RunState.DISCONNECTED)
                    self._start_outage_locked()
                    first = not self._outage_logged
                    self._outage_logged = True
                    ever_connected = self.connections > 0
                if first:
                    if ever_connected:
                        log.warning("cannot reconnect to vdsm at %s: %s; retrying in the background", self.where,
                                    reason)
                    else:
                        log.warning("cannot connect to vdsm at %s: %s; retrying in the background "
                                    "(back-off up to %g s)", self.where, reason, self.backoff_max)
                else:
                    log.debug("vdsm at %s still unreachable: %s; next attempt in %.1f s", self.where, reason,
                              delay)
                if self._wake.wait(delay):
                    self._wake.clear()
                delay = min(delay * 2, self.backoff_max)
                continue
            delay = self.backoff_initial
            with self._lock:
                since, self._outage_since = self._outage_since, None
                self._outage_logged = False
                was_connected = self.connections > 1  # this connection is counted already
            if was_connected or since is not None:
                took = time.monotonic() - since if since is not None else 0.0
                log.info("connected to vdsm at %s again after %.1f s", self.where, took)
            else:
                log.info("connected to vdsm at %s", self.where)

    def _connect_once(self) -> None:
        """Open one connection: TCP, TLS, CONNECT, SUBSCRIBE, then Host.ping2. Raises VdsmError."""
        with self._lock:
            self._gen += 1
            gen = self._gen
        hp = (self.host, self.port)
        conn = stomp.Connection12([hp], prefer_localhost=False, try_loopback_connect=False,
                                  reconnect_attempts_max=1, reconnect_sleep_initial=0.0,
                                  reconnect_sleep_jitter=0.0, timeout=self.timeout,
                                  heartbeats=(self.heartbeat_ms, self.heartbeat_ms))
        conn.set_ssl(for_hosts=[hp], key_file=self.key_path, cert_file=self.cert_path, ca_certs=self.ca_path,
                     ssl_version=ssl.PROTOCOL_TLS)
        stomp_compat.notice_eof(conn.transport)
        listener = _Listener(self, gen)
        conn.set_listener("mom", listener)
        stomp_filter = stomp_compat.install_log_filter()
        stomp_filter.local.connect_error = None
        started = time.monotonic()
        try:
            with stomp_compat.quiet_tls_deprecation():  # the ssl.PROTOCOL_TLS of set_ssl above
                conn.connect(wait=False, with_connect_command=True)
        except StompException:
            error = stomp_filter.local.connect_error or getattr(conn.transport, "mom_read_error", None)
            if error is None:  # the connection closed under the CONNECT frame
                raise VdsmUnavailable(self._closed_reason(started)) from None
            raise VdsmUnavailable(describe_error(error, self.ca_path, self.cert_path)) from None
        except OSError as e:
            raise VdsmUnavailable(describe_error(e, self.ca_path, self.cert_path)) from None
        deadline = started + self.timeout
        while not listener.connected.is_set():
            if listener.closed.is_set() or listener.error or time.monotonic() > deadline \
                    or self.state is RunState.CLOSED:
                break
            listener.connected.wait(0.05)
        if not listener.connected.is_set():
            self._shut(conn)
            if listener.error:
                raise VdsmUnavailable(listener.error)
            if listener.closed.is_set():
                error = getattr(conn.transport, "mom_read_error", None)
                raise VdsmUnavailable(describe_error(error, self.ca_path, self.cert_path) if error is not None
                                      else self._closed_reason(started))
            raise VdsmUnavailable(f"no STOMP CONNECTED answer within {self.timeout:g} s")
        try:
            conn.subscribe(destination=self._reply_to, id=str(uuid.uuid4()), ack="auto")
        except (StompException, OSError) as e:
            self._shut(conn)
            raise VdsmUnavailable(f"cannot subscribe: {e or type(e).__name__}") from None
        with self._lock:
            if self.state is RunState.CLOSED or gen != self._gen:
                closed = True
            else:
                closed = False
                self._conn = conn
        if closed:
            self._shut(conn)
            raise VdsmUnavailable("closed")
        try:
            self._call_on(conn, gen, "Host.ping2", {}, self.timeout)
        except VdsmCallError as e:
            # vdsm answers (e.g. "recovering from crash or still initializing"):
            # the transport works; the calls will say what vdsm thinks.
            log.debug("vdsm Host.ping2: %s", e)
        except VdsmError as e:
            with self._lock:
                if self._gen == gen:
                    self._conn = None
                    self._gen += 1
            self._shut(conn)
            raise VdsmUnavailable(self._closed_reason(started) if listener.closed.is_set()
                                  else f"Host.ping2: {e}") from None
        if self.on_connect is not None:
            try:
                self.on_connect()  # before calls can go out on the new connection
            except Exception:
                log.exception("vdsm on_connect callback failed")
        with self._lock:
            if gen != self._gen or self.state is not RunState.CONNECTING:
                raise VdsmUnavailable("connection lost right after it was opened")
            # Counted before it is marked up: whoever sees ``connected`` (read without
            # the lock) must also see this connection in ``connections``.
            self.connections += 1
            self._to(RunState.CONNECTED)

    def _closed_reason(self, since: float) -> str:
        problem = stomp_compat.STOMP_FILTER.last_problem
        detail = f" ({problem[1]})" if problem is not None and problem[0] >= since else ""
        # Right after the TLS handshake, the usual reason is vdsm refusing our certificate.
        return (f"vdsm closed the connection before the STOMP handshake completed{detail}; "
                f"does vdsm trust MOM's certificate (cert-file {self.cert_path})?")

    # -- files ------------------------------------------------------------------------------
    def _check_files(self) -> None:
        """Load key, certificate and CA once, so a wrong path or a key that does not
        match its certificate is a start-up error, not an endless retry."""
        for what, path in (("ca-cert-file", self.ca_path), ("cert-file", self.cert_path),
                           ("key-file", self.key_path)):
            try:
                with open(path, "rb"):
                    pass
            except OSError as e:
                raise VdsmConfigError(f"[vdsm] {what} {path}: {e.strerror or e}") from None
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        try:
            ctx.load_verify_locations(self.ca_path)
        except (ssl.SSLError, OSError) as e:
            raise VdsmConfigError(f"[vdsm] ca-cert-file {self.ca_path}: "
                                  f"{getattr(e, 'reason', None) or e}") from None
        try:
            ctx.load_cert_chain(self.cert_path, self.key_path)
        except (ssl.SSLError, OSError) as e:
            raise VdsmConfigError(f"[vdsm] cert-file/key-file {self.cert_path}, {self.key_path}: "
                                  f"{getattr(e, 'reason', None) or e}") from None
