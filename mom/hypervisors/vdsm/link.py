"""One STOMP 1.2 connection to vdsm over TLS, with stomp.py: opened
(:func:`open_link`), its events handed on (:class:`LinkListener`), and ended at
once (:func:`shut`).

The TLS connection uses vdsm's PKI: a client key and certificate and the CA
that signed vdsm's certificate. Like vdsm's own client, the server certificate
is checked against that CA but not against a host name (an oVirt host's
certificate names the host, while MOM connects to 127.0.0.1).
stomp.py builds its TLS context from ``ssl_version``. ssl.PROTOCOL_TLS gives a
context that verifies the peer against the CA (stomp.py sets CERT_REQUIRED)
without matching a host name, as vdsm's own client does. (PROTOCOL_TLS_CLIENT
would insist on the host name, which an oVirt host's certificate does not
give for 127.0.0.1.)
"""

from __future__ import annotations

import logging
import socket
import ssl
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import stomp
from stomp.exception import StompException

from mom.hypervisors.vdsm import stomp_compat
from mom.hypervisors.vdsm.errors import VdsmUnavailable
from mom.hypervisors.vdsm.tls import TlsFiles, attempt_cause, describe_error

log = logging.getLogger("mom.vdsm")


@dataclass(frozen=True)
class LinkEvents:
    """What the client is told of one connection (each with its generation)."""

    message: Callable[[int, Any], None]  # a MESSAGE frame's body
    lost: Callable[[int], None]  # the connection closed
    error: Callable[[int, str], None]  # a STOMP ERROR frame once connected


class LinkListener(stomp.ConnectionListener):  # type: ignore[misc]  # stomp-py ships no type information
    """Events of one STOMP connection, handed to the client with its generation."""

    def __init__(self, events: LinkEvents, gen: int) -> None:
        self.events = events
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
            self.events.error(self.gen, self.error)

    def on_message(self, frame: Any) -> None:
        self.events.message(self.gen, frame.body)

    def on_disconnected(self) -> None:
        self.closed.set()
        self.events.lost(self.gen)


@dataclass(frozen=True)
class LinkSettings:
    """Where and how to connect."""

    host: str
    port: int
    files: TlsFiles
    timeout: float
    heartbeat_ms: int
    reply_to: str  # the destination vdsm's answers come to


class Link:
    """One stomp.py connection being opened or open, and what its attempt met."""

    def __init__(self, settings: LinkSettings, listener: LinkListener) -> None:
        self.settings = settings
        self.listener = listener
        hp = (settings.host, settings.port)
        files = settings.files
        self.conn = stomp.Connection12([hp], prefer_localhost=False, try_loopback_connect=False,
                                       reconnect_attempts_max=1, reconnect_sleep_initial=0.0,
                                       reconnect_sleep_jitter=0.0, timeout=settings.timeout,
                                       heartbeats=(settings.heartbeat_ms, settings.heartbeat_ms))
        self.conn.set_ssl(for_hosts=[hp], key_file=files.key_path, cert_file=files.cert_path,
                          ca_certs=files.ca_path, ssl_version=ssl.PROTOCOL_TLS)
        stomp_compat.notice_eof(self.conn.transport)
        self.conn.set_listener("mom", listener)
        self.started = time.monotonic()
        self.opener = threading.current_thread()

    def cause(self) -> str:
        """Why this attempt failed: its TCP or TLS connect, else what the connection met after."""
        files = self.settings.files
        connect_error = stomp_compat.STOMP_FILTER.connect_error()
        if connect_error is not None:
            return describe_error(connect_error, files)
        met = stomp_compat.STOMP_FILTER.errors_of(self.opener) + stomp_compat.transport_errors(self.conn.transport)
        return attempt_cause(met, files, self.started)

    def open(self, closing: Callable[[], bool]) -> None:
        """TCP, TLS, STOMP CONNECT and SUBSCRIBE, or VdsmUnavailable naming the cause.
        ``closing`` says the client is closing. Called once, on the opening thread."""
        stomp_compat.install_log_filter().begin_attempt()
        conn, listener, timeout = self.conn, self.listener, self.settings.timeout
        try:
            with stomp_compat.quiet_tls_deprecation():  # the ssl.PROTOCOL_TLS of set_ssl
                conn.connect(wait=False, with_connect_command=True)
        except StompException:
            raise VdsmUnavailable(self.cause()) from None
        except OSError as e:
            raise VdsmUnavailable(describe_error(e, self.settings.files)) from None
        deadline = self.started + timeout
        while not listener.connected.is_set():
            if listener.closed.is_set() or listener.error or time.monotonic() > deadline or closing():
                break
            listener.connected.wait(0.05)
        if not listener.connected.is_set():
            shut(conn)
            if listener.error:
                raise VdsmUnavailable(listener.error)
            if listener.closed.is_set():
                raise VdsmUnavailable(self.cause())
            raise VdsmUnavailable(f"no STOMP CONNECTED answer within {timeout:g} s")
        try:
            conn.subscribe(destination=self.settings.reply_to, id=str(uuid.uuid4()), ack="auto")
        except (StompException, OSError) as e:
            shut(conn)
            raise VdsmUnavailable(f"cannot subscribe: {e or type(e).__name__}") from None


def shut(conn: Any) -> None:
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
