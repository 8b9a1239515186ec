"""stomp.py's compatibility patches, kept apart from the client and installed on
first use (VdsmClient.start), never at import.

- :func:`install_log_filter`: stomp.py logs a warning per failed attempt and per
  broken read; the filter keeps them out of MOM's log unless MOM logs at debug
  level, and remembers the reasons they carry (the client's outage lines name
  them).
- :func:`notice_eof`: stomp.py (9.x) does not notice a TLS peer closing.
- :func:`quiet_tls_deprecation`: stomp.py builds its TLS context from
  ``ssl.PROTOCOL_TLS``, which Python flags as deprecated.
"""

from __future__ import annotations

import contextlib
import logging
import ssl
import threading
import time
import warnings
from collections.abc import Iterator
from typing import Any

from stomp.exception import StompException

log = logging.getLogger("mom.vdsm")


class _StompLogFilter(logging.Filter):
    """Keeps stomp.py's records (one per failed attempt, per broken read...) out of
    MOM's log unless debugging, and remembers the reasons they carry."""

    def __init__(self) -> None:
        super().__init__()
        self.local = threading.local()
        self.last_problem: tuple[float, str] | None = None

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.WARNING:
            if isinstance(record.msg, str) and record.msg.startswith("could not connect") and record.args:
                args = record.args if isinstance(record.args, tuple) else (record.args,)
                self.local.connect_error = args[-1]  # the exception of this thread's attempt
            else:
                text = record.getMessage()
                if getattr(self.local, "connect_error", None) is None:
                    self.local.connect_error = OSError(text)
                self.last_problem = (time.monotonic(), text)
        return log.isEnabledFor(logging.DEBUG)


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
    """Make stomp.py's receiver loop end when the peer closes a TLS connection.

    stomp.py (9.x) reads TLS sockets in non-blocking mode and takes an empty
    read for "no data yet", so after vdsm goes away its receiver thread spins
    on a readable socket (a whole CPU) until the heart-beat timeout notices.
    A non-blocking TLS read that has no data raises SSLWantReadError; an empty
    read, or a read error, is the end: stop the loop, which then closes the
    socket and reports the disconnection (so the loss is noticed at once)."""
    receive = transport.receive
    benign = (ssl.SSLWantReadError, ssl.SSLWantWriteError, StompException)

    def receive_or_stop() -> Any:
        try:
            data = receive()
        except benign:
            raise
        except Exception as e:
            transport.mom_read_error = e  # e.g. vdsm's TLS alert refusing MOM's certificate
            transport.running = False
            raise
        if data is not None and len(data) == 0:
            transport.running = False
        return data

    transport.receive = receive_or_stop



@contextlib.contextmanager
def quiet_tls_deprecation() -> Iterator[None]:
    """stomp.py builds its context from ssl.PROTOCOL_TLS, which Python flags as
    deprecated: not news for momd's log."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="ssl.PROTOCOL_TLS is deprecated", category=DeprecationWarning)
        yield
