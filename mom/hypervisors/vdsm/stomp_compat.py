"""stomp.py's compatibility patches, kept apart from the client and installed on
first use (VdsmClient.start), never at import.

- :func:`install_log_filter`: stomp.py logs a warning per failed attempt and per
  broken read; the filter keeps them out of MOM's log unless MOM logs at debug
  level, and remembers the reasons they carry (the client's outage lines name
  them).
- :func:`notice_eof`: stomp.py (9.x) does not notice a TLS peer closing;
  :func:`transport_errors` is what a connection's transport met.
- :func:`quiet_tls_deprecation`: stomp.py builds its TLS context from
  ``ssl.PROTOCOL_TLS``, which Python flags as deprecated.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import ssl
import threading
import time
import warnings
import weakref
from collections.abc import Iterator
from typing import Any

from stomp.exception import InterruptedException

log = logging.getLogger("mom.vdsm")
ERRORS_KEPT = 16  # per thread


class _StompLogFilter(logging.Filter):
    """Keeps stomp.py's records (one per failed attempt, per broken read...) out of
    MOM's log unless debugging, and remembers the errors they carry, per thread:
    the connecting thread's, and each connection's receiver thread's."""

    def __init__(self) -> None:
        super().__init__()
        self.local = threading.local()
        self.last_problem: tuple[float, str] | None = None
        self._lock = threading.Lock()
        # Weak: a receiver thread's errors go with the thread.
        self._errors: weakref.WeakKeyDictionary[threading.Thread, list[BaseException]] = \
            weakref.WeakKeyDictionary()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.WARNING:
            args = record.args if isinstance(record.args, tuple) else (record.args,)
            if isinstance(record.msg, str) and record.msg.startswith("could not connect") and record.args:
                self.local.connect_error = args[-1]  # the exception of this thread's attempt
            else:
                text = record.getMessage()
                carried = [e for e in (record.msg, *args, record.exc_info[1] if record.exc_info else None)
                           if isinstance(e, BaseException)]
                with self._lock:
                    seen = self._errors.setdefault(threading.current_thread(), [])
                    if len(seen) < ERRORS_KEPT:  # the cause comes early; later warnings do not pile up
                        seen.extend(carried or [OSError(text)])
                self.last_problem = (time.monotonic(), text)
        return log.isEnabledFor(logging.DEBUG)

    def begin_attempt(self) -> None:
        """Forget what the calling thread's earlier attempts met."""
        self.local.connect_error = None
        with self._lock:
            self._errors.pop(threading.current_thread(), None)

    def connect_error(self) -> BaseException | None:
        """Why this thread's TCP or TLS connect failed in its attempt, if it did."""
        return getattr(self.local, "connect_error", None)

    def errors_of(self, *threads: threading.Thread | None) -> list[BaseException]:
        """The errors stomp.py logged on these threads (since the caller's begin_attempt)."""
        with self._lock:
            return [e for t in threads if t is not None for e in self._errors.get(t, ())]


STOMP_FILTER = _StompLogFilter()
_installed = False
_install_lock = threading.Lock()


def install_log_filter() -> _StompLogFilter:
    """Put the filter on stomp.py's logger (once per process); return it."""
    global _installed
    with _install_lock:
        if not _installed:
            stomp_log = logging.getLogger("stomp.py")
            stomp_log.addFilter(STOMP_FILTER)
            stomp_log.setLevel(logging.WARNING)  # its warnings carry the reasons; the filter decides what shows
            _installed = True
    return STOMP_FILTER


def installed() -> bool:
    """Whether install_log_filter ran in this process."""
    return _installed


def notice_eof(transport: Any) -> None:
    """Make stomp.py's receiver loop end when the peer closes a TLS connection,
    and keep the read errors that say why.

    stomp.py (9.x) reads TLS sockets in non-blocking mode and takes an empty
    read for "no data yet", so after vdsm goes away its receiver thread spins
    on a readable socket (a whole CPU) until the heart-beat timeout notices.
    A non-blocking TLS read that has no data raises SSLWantReadError; an empty
    read, or a read error, is the end: stop the loop, which then closes the
    socket and reports the disconnection (so the loss is noticed at once).

    The socket is read here rather than through stomp.py's ``receive``, which
    drops a read error before STOMP's CONNECTED frame (it returns None unless
    connected): vdsm's TLS alert refusing MOM's certificate comes just then.
    A read after stomp.py dropped the socket (a send failed first) ends the
    loop too; it is not a cause."""
    recv_bytes = getattr(transport, "_Transport__recv_bytes", 16384)  # stomp.py's own read size
    transport.mom_read_errors = []
    benign = (ssl.SSLWantReadError, ssl.SSLWantWriteError)

    def receive_or_stop() -> Any:
        sock = transport.socket
        if sock is None:  # dropped by stomp.py after a failure it logged
            transport.running = False
            return b""
        try:
            data = sock.recv(recv_bytes)
        except benign:
            raise
        except OSError as e:
            if e.errno in (errno.EAGAIN, errno.EINTR):
                raise InterruptedException() from None  # stomp.py reads again
            transport.mom_read_errors.append(e)  # kept in order: a later error must not hide it
            transport.running = False
            raise
        if data is not None and len(data) == 0:
            transport.running = False
        return data

    transport.receive = receive_or_stop


def transport_errors(transport: Any) -> list[BaseException]:
    """What one connection's transport met: its read errors, then what stomp.py
    logged on its receiver thread (a failed send of the CONNECT frame...)."""
    reads: list[BaseException] = getattr(transport, "mom_read_errors", [])
    return list(reads) + STOMP_FILTER.errors_of(getattr(transport, "io_thread", None))


@contextlib.contextmanager
def quiet_tls_deprecation() -> Iterator[None]:
    """stomp.py builds its context from ssl.PROTOCOL_TLS, which Python flags as
    deprecated: not news for momd's log."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="ssl.PROTOCOL_TLS is deprecated", category=DeprecationWarning)
        yield
