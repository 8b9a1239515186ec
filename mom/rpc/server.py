"""The XML-RPC transport: HTTP POST over TCP (127.0.0.1 only) or a unix socket,
and the small HTTP server it shares with the metrics endpoint.

MOM's RPC has no authentication, as the original's, so it is only reachable
from the host: TCP binds the loopback address, a unix socket is created with
mode 0600. Clients must never keep the policy loop from its interval, nor lock
other clients out:

- One selector thread per server accepts connections, reads requests and
  writes answers without blocking; a fixed pool of worker threads only parses
  complete requests and calls the methods. A worker never touches a client's
  socket, so a client that does not read its answer holds nothing but its own
  connection. The thread count never depends on the number of clients.
- A request must arrive whole within REQUEST_TIMEOUT seconds of the
  connection and its answer be read within WRITE_TIMEOUT seconds: slow
  writers, idle connections and clients that do not read are cut off.
- At most MAX_CONNECTIONS connections per server. At the cap, a new
  connection closes the oldest one still sending its request (then the oldest
  one not reading its answer), so a normal client always gets in.
- Headers are limited to MAX_HEADER bytes and bodies to MAX_BODY (1 MiB). A
  bigger body gets HTTP 413 at once, and is read and discarded (up to
  MAX_DRAIN) so the client sees that answer rather than a reset.
- Bodies with a DOCTYPE or an ENTITY declaration (or in an encoding that
  could hide one: UTF-16/32, EBCDIC...) are refused with an XML-RPC fault
  before any parsing, so no entity is ever expanded; malformed XML and
  arrays or structs nested deeper than MAX_NESTING get a fault too.
- Serving clients takes at most CLIENT_TIME_SHARE of the time, one piece of
  work at a time (ClientTime), and methods can return pre-marshalled answers
  (ResponseCache), so the scheduler keeps the interpreter lock (see ClientTime).
- Each RPC call is logged at debug level; each kind of refused request once
  per LOG_PERIOD at info level, with no traceback.

Integers beyond 32 bits travel as ``<i8>`` and ``None`` as ``<nil/>``.
"""

from __future__ import annotations

import collections
import contextlib
import errno
import functools
import logging
import os
import queue
import re
import selectors
import socket
import tempfile
import threading
import time
import xmlrpc.client
from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass, field
from typing import Any
from xml.parsers.expat import ExpatError

from mom.core.errors import MomError
from mom.core.faults import OncePerKind
from mom.core.pool import CallPool
from mom.core.sockets import existing_socket_problem

log = logging.getLogger("mom.rpc")

MAX_BODY = 1 << 20
MAX_HEADER = 16 << 10
MAX_DRAIN = 64 << 20
MAX_CONNECTIONS = 128
# Connections waiting to be accepted: more than a flood of idle ones can fill while
# momd closes the oldest (connecting to a full unix-socket backlog fails at once).
LISTEN_BACKLOG = 1024
MAX_NESTING = 64
REQUEST_TIMEOUT = 5.0
ACCEPT_PAUSE = 0.2  # seconds without accepting after running out of file descriptors
WRITE_TIMEOUT = 5.0
DRAIN_IDLE = 1.0  # a refused body is discarded while it keeps coming, with pauses up to this long
WORKERS = 4
RPC_PATH = "/RPC2"
LOG_PERIOD = 60.0
# The share of the time serving RPC and metrics clients may take (see ClientTime).
CLIENT_TIME_SHARE = 0.25
CLIENT_TIME_BURST = 0.05  # seconds a quiet server may work at once
MAX_PAUSE = 0.5  # seconds one turn waits at most
MAX_BODY_HEADER = "X-Mom-Max-Body"  # tells clients the limit in a 413 answer

# Fault codes (the original used the stdlib's: 1 for any exception in a method).
FAULT_METHOD = 1
FAULT_NO_METHOD = 2
FAULT_BAD_REQUEST = 3
FAULT_REFUSED = 4


class RpcServerError(MomError):
    """The server cannot listen where it is told to (one line)."""


# -- shared helpers ---------------------------------------------------------------------

class ClientTime:
    """How much of the wall-clock time serving clients may take: one piece of client
    work at a time (a selector round, a method call), and at most `share` of the time
    over any stretch longer than `burst` seconds.

    Why wall time and one at a time: momd's threads share one interpreter lock, and a
    tick is thousands of short system calls (the collectors' reads, the hypervisor's
    calls), each giving the lock up. While a client thread runs, each of them may wait
    for the lock, and on a busy machine for a CPU after it: the tick stretches many
    times over, however little CPU the clients use. Wall time counts those waits too,
    so while the scheduler is busy client work gets fewer turns; in between it runs
    at full speed."""

    def __init__(self, share: float = CLIENT_TIME_SHARE, burst: float = CLIENT_TIME_BURST) -> None:
        if not 0 < share <= 1 or burst <= 0:
            raise ValueError("share must be in (0, 1] and burst positive")
        self.share = share
        self.burst = burst
        self._tokens = burst
        self._stamp = time.monotonic()
        self._lock = threading.Lock()
        self.used = 0.0  # seconds of client work (for the benchmark)
        self.paused = 0.0  # seconds client work waited for its turn beyond the lock

    def _refill(self, now: float) -> None:
        self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.share)
        self._stamp = now

    @contextlib.contextmanager
    def turn(self) -> Iterator[None]:
        """Run the body as one piece of client work: after the previous one, once the
        share allows (the wait is bounded by the last piece's length / share)."""
        with self._lock:
            t0 = time.monotonic()
            self._refill(t0)
            if self._tokens < 0:
                # A long piece (a big policy compiled) is paid for over several turns,
                # so that a stop is never held up for long.
                pause = min(-self._tokens / self.share, MAX_PAUSE)
                time.sleep(pause)  # the interpreter lock is the scheduler's meanwhile
                self.paused += pause
                t0 = time.monotonic()
                self._refill(t0)
            try:
                yield
            finally:
                spent = time.monotonic() - t0
                self._tokens -= spent
                self.used += spent


CLIENT_TIME = ClientTime()  # shared by the RPC servers and the metrics endpoint of a momd


# -- marshalling ------------------------------------------------------------------------

def _dump_int(marshaller: xmlrpc.client.Marshaller, value: int, write: Callable[[str], Any]) -> None:
    tag = "int" if -2**31 <= value < 2**31 else "i8"
    if not -2**63 <= value < 2**63:
        raise OverflowError("int exceeds XML-RPC limits")
    write(f"<value><{tag}>{int(value)}</{tag}></value>\n")


class _I8Marshaller(xmlrpc.client.Marshaller):
    """The stdlib's marshaller, sending integers beyond 32 bits as <i8>."""

    # The stdlib looks a value's dump function up in this class-level table; a copy, so
    # the stdlib's own Marshaller keeps sending <int>.
    dispatch = dict(xmlrpc.client.Marshaller.dispatch)  # noqa: RUF012 - the stdlib's table, by design
    dispatch[int] = _dump_int


def dumps_response(value: Any) -> bytes:
    """A methodResponse carrying value or an xmlrpc.client.Fault."""
    m = _I8Marshaller("utf-8", allow_none=True)
    if isinstance(value, xmlrpc.client.Fault):
        body = m.dumps(value)
    else:
        body = m.dumps((value,))
    return ("<?xml version='1.0' encoding='utf-8'?>\n<methodResponse>\n" + body
            + "</methodResponse>\n").encode("utf-8", "xmlcharrefreplace")


@dataclass(frozen=True)
class Marshalled:
    """A complete methodResponse, marshalled once: a method returning one is answered
    with these bytes as they are (many clients, one marshalling)."""

    response: bytes


class ResponseCache:
    """One marshalled answer per key (e.g. the engine's collection round), rebuilt
    when the key changes or it is older than max_age seconds. Concurrent callers
    with a new key wait for one build instead of each building it."""

    def __init__(self, max_age: float = 1.0) -> None:
        self.max_age = max_age
        self._key: Hashable = object()
        self._built = 0.0
        self._answer: Marshalled | None = None
        self._lock = threading.Lock()

    def get(self, key: Hashable, build: Callable[[], Any]) -> Marshalled:
        with self._lock:
            if self._answer is None or key != self._key or time.monotonic() - self._built > self.max_age:
                # The key is read before the data: at worst newer data is kept under an older key.
                self._answer = Marshalled(dumps_response(build()))
                self._key, self._built = key, time.monotonic()
            return self._answer


def cached_response(key: Callable[[Any], Hashable], max_age: float = 1.0) -> Callable[[Callable[[Any], Any]],
                                                                                       Callable[[Any], Marshalled]]:
    """Decorates a method without arguments: its value is marshalled once per key(self)."""
    def decorate(method: Callable[[Any], Any]) -> Callable[[Any], Marshalled]:
        attr = f"_cached_{method.__name__}"

        @functools.wraps(method)
        def cached(self: Any) -> Marshalled:
            cache: ResponseCache | None = self.__dict__.get(attr)
            if cache is None:
                cache = self.__dict__.setdefault(attr, ResponseCache(max_age))
            return cache.get(key(self), lambda: method(self))
        return cached
    return decorate


# -- requests ---------------------------------------------------------------------------

_XML_DECL = re.compile(rb"""^\s*<\?xml[^>]*?encoding\s*=\s*["']([A-Za-z0-9._-]+)["']""")
_ENCODINGS = {b"utf-8", b"utf8", b"us-ascii", b"ascii", b"iso-8859-1", b"latin-1", b"latin1"}


def _refused_markup(body: bytes) -> str | None:
    """Why the body is refused before parsing, or None.

    XML-RPC never needs a DTD or entities, so any DOCTYPE or ENTITY declaration
    is refused outright (no entity is ever expanded). So that the check cannot
    be dodged, the body must be in an ASCII-compatible encoding: no NUL bytes
    (UTF-16/32) and no encoding declaration other than UTF-8, ASCII or Latin-1.
    """
    if b"\x00" in body or body.startswith((b"\xfe\xff", b"\xff\xfe")):
        return "only UTF-8, ASCII or Latin-1 requests are accepted"
    m = _XML_DECL.match(body[:512])
    if m and m.group(1).lower() not in _ENCODINGS:
        return "only UTF-8, ASCII or Latin-1 requests are accepted"
    low = body.lower()
    if b"<!doctype" in low or b"<!entity" in low:
        return "DOCTYPE and ENTITY declarations are refused"
    return None


class NestingError(MomError, ValueError):
    pass


class _BoundedUnmarshaller(xmlrpc.client.Unmarshaller):
    """The stdlib's unmarshaller, stopping the parse at arrays or structs nested
    deeper than MAX_NESTING: no method takes such values, and formatting or
    comparing them would recurse (RecursionError)."""

    def __init__(self) -> None:
        super().__init__(use_builtin_types=True)
        self._depth = 0

    def start(self, tag: str, attrs: Any) -> None:
        if tag in ("array", "struct"):
            self._depth += 1
            if self._depth > MAX_NESTING:
                raise NestingError(f"values nested deeper than {MAX_NESTING} levels")
        super().start(tag, attrs)

    def end(self, tag: str) -> None:
        if tag in ("array", "struct"):
            self._depth -= 1
        super().end(tag)


def loads_request(body: bytes) -> tuple[tuple[Any, ...], str | None]:
    """(params, method name) of a methodCall. Raises NestingError, ExpatError, ValueError..."""
    u = _BoundedUnmarshaller()
    p = xmlrpc.client.ExpatParser(u)
    p.feed(body)
    p.close()
    return u.close(), u.getmethodname()


class Dispatcher:
    """Method name -> callable, with system.listMethods."""

    def __init__(self) -> None:
        self.methods: dict[str, Callable[..., Any]] = {}
        self.methods["system.listMethods"] = self.list_methods
        self.problems = OncePerKind(log, LOG_PERIOD)

    def register(self, name: str, fn: Callable[..., Any]) -> None:
        self.methods[name] = fn

    def list_methods(self) -> list[str]:
        return sorted(self.methods)

    def _bad(self, kind: str, message: str, code: int = FAULT_BAD_REQUEST) -> bytes:
        self.problems.report(kind, f"RPC: refused a request: {message}")
        return dumps_response(xmlrpc.client.Fault(code, message))

    def dispatch(self, body: bytes) -> bytes:
        refused = _refused_markup(body)
        if refused:
            return self._bad("markup", refused, FAULT_REFUSED)
        try:
            params, name = loads_request(body)
        except NestingError as e:
            return self._bad("nesting", f"malformed request: {e}")
        except (ExpatError, ValueError, TypeError, IndexError, KeyError, RecursionError,
                xmlrpc.client.ResponseError) as e:
            return self._bad("malformed", f"malformed request: {e}")
        if name is None:
            return self._bad("malformed", "malformed request: no methodName")
        log.debug("RPC %s%s", name, "(...)" if params else "()")
        fn = self.methods.get(name)
        if fn is None:
            return dumps_response(xmlrpc.client.Fault(FAULT_NO_METHOD, f'method "{name}" is not supported'))
        try:
            result = fn(*params)
        except xmlrpc.client.Fault as f:
            return dumps_response(f)
        except RecursionError:
            return self._bad("nesting", f"{name}: values nested too deeply")
        except TypeError as e:
            if "positional argument" in str(e) or "takes" in str(e):
                return dumps_response(xmlrpc.client.Fault(FAULT_BAD_REQUEST, f"{name}: {e}"))
            log.exception("RPC %s failed", name)
            return dumps_response(xmlrpc.client.Fault(FAULT_METHOD, f"{name}: {type(e).__name__}: {e}"))
        except Exception as e:
            log.exception("RPC %s failed", name)
            return dumps_response(xmlrpc.client.Fault(FAULT_METHOD, f"{name}: {type(e).__name__}: {e}"))
        if isinstance(result, Marshalled):
            return result.response
        try:
            return dumps_response(result)
        except (TypeError, OverflowError) as e:
            log.error("RPC %s: cannot marshal the result: %s", name, e)
            return dumps_response(xmlrpc.client.Fault(FAULT_METHOD, f"{name}: cannot marshal the result: {e}"))


# -- HTTP -------------------------------------------------------------------------------

@dataclass
class Request:
    method: str
    path: str  # without the query string
    headers: dict[str, str]  # names in lower case
    body: bytes = b""


def http_response(status: str, body: bytes, content_type: str = "text/xml",
                  extra: dict[str, str] | None = None, head_only: bool = False) -> bytes:
    """A whole HTTP/1.0 answer; the connection closes after it."""
    lines = [f"HTTP/1.0 {status}", "Server: momd", f"Content-Type: {content_type}",
             f"Content-Length: {len(body)}", "Connection: close"]
    lines += [f"{k}: {v}" for k, v in (extra or {}).items()]
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return head if head_only else head + body


def _error(status: str, message: str, extra: dict[str, str] | None = None) -> bytes:
    return http_response(status, message.encode() + b"\n", "text/plain; charset=utf-8", extra)


def _size(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 100_000 else f"{n} bytes"


def _limit(n: int) -> str:
    return f"{n >> 20} MiB" if n % (1 << 20) == 0 else f"{n >> 10} KiB" if n % 1024 == 0 else f"{n} bytes"


class Refusal(MomError):
    """A request refused on its headers: the answer to send and the log line's kind."""

    def __init__(self, kind: str, status: str, message: str, extra: dict[str, str] | None = None,
                 drain: int = 0) -> None:
        super().__init__(message)
        self.kind, self.status, self.message, self.extra, self.drain = kind, status, message, extra, drain


def parse_head(head: bytes) -> Request:
    """The request line and headers (without the blank line). Raises Refusal."""
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split()
    if len(parts) != 3 or not parts[2].startswith("HTTP/"):
        raise Refusal("http", "400 Bad Request", "not an HTTP request")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep:
            raise Refusal("http", "400 Bad Request", "malformed header line")
        name, value = name.strip().lower(), value.strip()
        if name == "content-length" and name in headers and headers[name] != value:
            raise Refusal("http", "400 Bad Request", "conflicting Content-Length headers")
        headers[name] = value
    return Request(parts[0], parts[1].split("?", 1)[0], headers)


def body_length(req: Request, limit: int) -> int:
    """The announced body length, checked. Raises Refusal (413 with the body to discard)."""
    if "transfer-encoding" in req.headers:
        raise Refusal("http", "411 Length Required", "chunked requests are not accepted; send a Content-Length")
    value = req.headers.get("content-length")
    if value is None:
        if req.method in ("GET", "HEAD"):
            return 0
        raise Refusal("http", "411 Length Required", "a Content-Length is required")
    # ASCII digits only: str.isdigit() also accepts '²', which int() rejects
    if not re.fullmatch(r"[0-9]{1,12}", value):
        raise Refusal("http", "400 Bad Request", "malformed Content-Length")
    length = int(value)
    if length > limit:
        raise Refusal("size", "413 Payload Too Large",
                      f"request too large ({_size(length)}; momd accepts at most {_limit(limit)})",
                      {MAX_BODY_HEADER: str(limit)}, drain=length)
    return length


# connection states
READING, DRAINING, WORKING, WRITING = "reading", "draining", "working", "writing"


@dataclass(eq=False)
class _Conn:
    sock: socket.socket
    deadline: float
    state: str = READING
    buf: bytearray = field(default_factory=bytearray)
    request: Request | None = None
    need: int = -1  # total bytes (headers + body) once the headers are known
    start: int = 0  # where the body starts
    out: memoryview | None = None
    drain: int = 0  # bytes of a refused body still to discard
    drain_end: float = 0.0  # when discarding stops in any case
    events: int = 0  # what the selector watches for


class HttpServer:
    """A small HTTP/1.0 server on a listening socket: one request per connection.

    `check(request)` runs on the selector thread once the headers are read and
    raises Refusal or returns the body limit; `handle(request)` builds the whole
    answer, on a worker of `pool` when given (it may be slow), else on the
    selector thread (it must be quick, e.g. cached). Answers are written by the
    selector thread, without blocking."""

    def __init__(self, sock: socket.socket, name: str, label: str, check: Callable[[Request], int],
                 handle: Callable[[Request], bytes], *, pool_size: int = 0, logger: logging.Logger = log,
                 budget: ClientTime | None = None, max_connections: int = MAX_CONNECTIONS) -> None:
        self.sock = sock
        self.sock.setblocking(False)
        self.name = name  # of its threads
        self.label = label  # in its log lines
        self.check = check
        self.handle = handle
        self.log = logger
        self.problems = OncePerKind(logger, LOG_PERIOD)
        self.budget = budget or CLIENT_TIME
        self.max_connections = max_connections
        self._pool_size = pool_size
        self._pool: CallPool | None = None
        self._thread: threading.Thread | None = None
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._done: queue.SimpleQueue[tuple[_Conn, bytes]] = queue.SimpleQueue()
        self._stopping = False
        self._sel: selectors.BaseSelector | None = None
        self._next_sweep = 0.0  # when deadlines are checked next
        # open connections, oldest first (insertion order): eviction takes the first reading one
        self._conns: collections.OrderedDict[socket.socket, _Conn] = collections.OrderedDict()

    # -- life --------------------------------------------------------------------------------
    def start(self) -> None:
        # Daemon threads: a stuck worker never holds up momd's exit.
        if self._pool_size:
            self._pool = CallPool(self._pool_size, f"{self.name}-worker")
        self._thread = threading.Thread(target=self._loop, name=self.name, daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop within about a second: the threads are daemon threads, so one stuck in a
        method is abandoned rather than waited for."""
        self._stopping = True
        self._wake()
        if self._thread is not None:
            self._thread.join(1.0)
        if self._pool is not None:
            self._pool.close()
        self.sock.close()
        self._wake_r.close()
        self._wake_w.close()

    def _wake(self) -> None:
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass  # full (the loop is awake anyway) or closed

    # -- the selector loop -------------------------------------------------------------------
    def _loop(self) -> None:
        sel = self._sel = selectors.DefaultSelector()
        sel.register(self.sock, selectors.EVENT_READ, None)
        sel.register(self._wake_r, selectors.EVENT_READ, "wake")
        self._next_sweep = time.monotonic() + 0.1
        self._accept_paused_until = 0.0  # out of file descriptors: accept again after this
        try:
            while not self._stopping:
                busy = self._conns or self._accept_paused_until
                timeout = max(0.0, self._next_sweep - time.monotonic()) if busy else None
                events = sel.select(timeout)
                with self.budget.turn():
                    self._handle_events(events)
        except Exception:
            self.log.exception("%s: server loop failed", self.label)
        finally:
            for c in list(self._conns.values()):
                self._close(c)
            sel.close()

    def _handle_events(self, events: list[tuple[selectors.SelectorKey, int]]) -> None:
        for key, mask in events:
            if self._stopping:
                break
            if key.data == "wake":
                self._drain_wake()
                continue
            try:
                if key.data is None:
                    self._accept()
                else:
                    self._serve_event(key.data, mask)
            except Exception:
                self.log.exception("%s: dropping a connection after an unexpected error", self.label)
                if key.data is not None:
                    self._close(key.data)
        self._finish_done()
        now = time.monotonic()
        if now >= self._next_sweep:
            self._sweep(now)
            self._next_sweep = now + 0.1
        if self._accept_paused_until and now >= self._accept_paused_until:
            assert self._sel is not None
            self._accept_paused_until = 0.0
            self._sel.register(self.sock, selectors.EVENT_READ, None)

    def _drain_wake(self) -> None:
        try:
            while self._wake_r.recv(4096):
                pass
        except (BlockingIOError, InterruptedError):
            pass

    def _watch(self, c: _Conn, events: int) -> None:
        assert self._sel is not None
        if c.events == events:
            return
        if c.events and events:
            self._sel.modify(c.sock, events, c)
        elif events:
            self._sel.register(c.sock, events, c)
        else:
            self._sel.unregister(c.sock)
        c.events = events

    def _close(self, c: _Conn) -> None:
        if self._conns.pop(c.sock, None) is None:
            return
        if c.events:
            try:
                assert self._sel is not None
                self._sel.unregister(c.sock)
            except (KeyError, ValueError):
                pass
            c.events = 0
        c.sock.close()

    def _accept(self) -> None:
        for _ in range(64):  # drain the backlog, a bounded batch at a time
            try:
                sock, _addr = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                self.problems.report("accept", f"{self.label}: cannot accept: {e.strerror or e}", logging.WARNING)
                if e.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    # The pending connection stays pending: stop watching the listener a
                    # moment, or the selector reports it again at once and the loop spins.
                    assert self._sel is not None
                    self._sel.unregister(self.sock)
                    self._accept_paused_until = time.monotonic() + ACCEPT_PAUSE
                return
            if len(self._conns) >= self.max_connections and not self._evict():
                sock.close()  # every connection is in a worker: nothing to give up
                self.problems.report("full", f"{self.label}: {len(self._conns)} requests in progress; "
                                     "refusing new connections until one is answered", logging.WARNING)
                continue
            sock.setblocking(False)
            c = _Conn(sock, time.monotonic() + REQUEST_TIMEOUT)
            self._conns[sock] = c
            self._watch(c, selectors.EVENT_READ)
            # A client's request is usually there already: read it now, before more
            # accepts (of a flood of idle connections) could close this one.
            self._read(c)

    def _evict(self) -> bool:
        """Close the oldest connection that has sent nothing, else the oldest one still
        sending its request, else the oldest not reading its answer; False if all are
        being worked on."""
        kinds: list[Callable[[_Conn], bool]] = [
            lambda c: c.state == READING and not c.buf, lambda c: c.state in (READING, DRAINING),
            lambda c: c.state == WRITING]
        for kind in kinds:
            for c in self._conns.values():
                if kind(c):
                    self._close(c)
                    self.problems.report("evict", f"{self.label}: {self.max_connections} connections open, the "
                                         "most kept; closing the oldest idle ones to let new clients in")
                    return True
        return False

    def _sweep(self, now: float) -> None:
        for c in [c for c in self._conns.values() if c.deadline <= now and c.state != WORKING]:
            if c.state == READING and c.buf:
                self.problems.report("slow", f"{self.label}: cut a client that did not send its request within "
                                     f"{REQUEST_TIMEOUT:g} s")
                self._reply_and_close(c, _error("408 Request Timeout", "request timeout"))
            elif c.state == WRITING:
                self.problems.report("unread", f"{self.label}: cut a client that did not read its answer within "
                                     f"{WRITE_TIMEOUT:g} s")
                self._close(c)
            elif c.state == READING:
                self.problems.report("idle", f"{self.label}: closed a connection that sent nothing within "
                                     f"{REQUEST_TIMEOUT:g} s")
                self._close(c)
            else:  # still sending a refused body: it had its answer
                self._close(c)

    def _reply_and_close(self, c: _Conn, reply: bytes) -> None:
        try:
            c.sock.send(reply)  # best effort, non-blocking: the client is misbehaving anyway
        except OSError:
            pass
        self._close(c)

    def _serve_event(self, c: _Conn, mask: int) -> None:
        if mask & selectors.EVENT_READ:
            if c.state == READING:
                self._read(c)
            elif c.state == DRAINING:
                self._discard(c)
        if mask & selectors.EVENT_WRITE and c.sock in self._conns and c.out is not None and len(c.out):
            self._write(c)

    def _recv(self, c: _Conn) -> bytes | None:
        """Bytes read, b'' at the end, None when there are none yet."""
        try:
            return c.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return None
        except OSError:
            return b""

    def _read(self, c: _Conn) -> None:
        data = self._recv(c)
        if data is None:
            return
        if not data:
            self._close(c)
            return
        c.buf += data
        if c.request is None and not self._read_head(c):
            return
        if len(c.buf) >= c.need:
            req = c.request
            assert req is not None
            req.body = bytes(c.buf[c.start:c.need])  # a pipelined second request is not served
            c.buf = bytearray()
            self._dispatch(c, req)

    def _read_head(self, c: _Conn) -> bool:
        """Parse the headers once they are all in; False while waiting or after a refusal."""
        end = c.buf.find(b"\r\n\r\n")
        if end < 0 and len(c.buf) <= MAX_HEADER:
            return False
        try:
            if end < 0 or end > MAX_HEADER:
                raise Refusal("header", "431 Request Header Fields Too Large", "headers too large")
            req = parse_head(bytes(c.buf[:end]))
            limit = self.check(req)
            length = body_length(req, limit)
        except Refusal as r:
            self._refuse(c, r, len(c.buf) - (end + 4 if end >= 0 else len(c.buf)))
            return False
        c.request = req
        c.start = end + 4
        c.need = c.start + length
        return True

    def _refuse(self, c: _Conn, r: Refusal, body_read: int) -> None:
        """Answer a refused request now; discard the rest of its body first if it is not
        too big, so that closing does not reset the connection under the answer."""
        self.problems.report(r.kind, f"{self.label}: refused a request (HTTP {r.status[:3]}): {r.message}")
        c.buf = bytearray()
        c.drain = max(0, r.drain - body_read)
        if c.drain > MAX_DRAIN:
            self._reply_and_close(c, _error(r.status, r.message, r.extra))
            return
        c.state = DRAINING if c.drain else WRITING
        c.drain_end = time.monotonic() + REQUEST_TIMEOUT
        self._start_write(c, _error(r.status, r.message, r.extra))

    def _discard(self, c: _Conn) -> None:
        data = self._recv(c)
        if data is None:
            return
        c.drain = max(0, c.drain - len(data)) if data else 0
        if c.drain and data:
            c.deadline = min(time.monotonic() + DRAIN_IDLE, c.drain_end)
            return
        c.state = WRITING
        if c.out is not None and len(c.out):
            self._watch(c, selectors.EVENT_WRITE)
        else:
            self._close(c)  # answered and shut down already; all its bytes read: no reset

    def _dispatch(self, c: _Conn, req: Request) -> None:
        if self._pool is None:
            self._start_write(c, self._handle(req))
            return
        c.state = WORKING
        self._watch(c, 0)
        self._pool.submit(self._work, c, req)

    def _handle(self, req: Request) -> bytes:
        try:
            return self.handle(req)
        except Exception:
            self.log.exception("%s: request failed", self.label)
            return _error("500 Internal Server Error", "internal error (see momd's log)")

    def _work(self, c: _Conn, req: Request) -> None:
        """On a worker: build the answer in its turn, hand it to the selector thread."""
        if self._stopping:
            return
        with self.budget.turn():
            answer = self._handle(req)
        self._done.put((c, answer))
        self._wake()

    def _finish_done(self) -> None:
        while True:
            try:
                c, answer = self._done.get_nowait()
            except queue.Empty:
                return
            if c.sock in self._conns:
                c.state = WRITING
                self._start_write(c, answer)

    def _start_write(self, c: _Conn, answer: bytes) -> None:
        if c.state != DRAINING:
            c.state = WRITING
        c.deadline = time.monotonic() + WRITE_TIMEOUT
        c.out = memoryview(answer)
        self._write(c)

    def _write(self, c: _Conn) -> None:
        assert c.out is not None
        try:
            sent = c.sock.send(c.out)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            self._close(c)  # the client went away
            return
        c.out = c.out[sent:]
        if len(c.out):
            self._watch(c, selectors.EVENT_WRITE | (selectors.EVENT_READ if c.state == DRAINING else 0))
        elif c.state == DRAINING:
            # Answered: end our side so the client reads the answer now, and go on
            # discarding what it still sends (closing would reset the connection).
            try:
                c.sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass
            c.deadline = min(time.monotonic() + DRAIN_IDLE, c.drain_end)
            self._watch(c, selectors.EVENT_READ)
        else:
            self._finish(c)

    def _finish(self, c: _Conn) -> None:
        try:
            c.sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        self._close(c)


# -- the RPC server ---------------------------------------------------------------------

class RpcServer:
    """Listens at construction (so errors show at startup); serves after start()."""

    def __init__(self, dispatcher: Dispatcher, *, port: int | None = None, path: str | None = None,
                 workers: int = WORKERS, budget: ClientTime | None = None) -> None:
        if (port is None) == (path is None):
            raise ValueError("give exactly one of port and path")
        self.dispatcher = dispatcher
        self.path = os.path.abspath(path) if path else None
        self._inode: tuple[int, int] | None = None
        self.sock = self._listen_unix(self.path) if self.path else self._listen_tcp(port or 0)
        self.address = self.path or self.sock.getsockname()
        self.http = HttpServer(self.sock, "mom-rpc", "RPC", self._check, self._answer, pool_size=workers, budget=budget)

    # -- listening ---------------------------------------------------------------------
    @staticmethod
    def _listen_tcp(port: int) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))  # never beyond the host: there is no authentication
            sock.listen(LISTEN_BACKLOG)
        except OSError as e:
            sock.close()
            raise RpcServerError(f"rpc-port {port}: cannot listen on 127.0.0.1:{port}: {e.strerror or e}") from None
        return sock

    def _listen_unix(self, path: str) -> socket.socket:
        directory = os.path.dirname(path) or "."
        problem = existing_socket_problem(path)
        if problem:
            raise RpcServerError(f"rpc-port {path}: {problem}")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            # Bind in a private directory, make the socket 0600, then move it into
            # place: it is never reachable with looser permissions.
            tmpdir = tempfile.mkdtemp(prefix=".momd-rpc-", dir=directory)
            try:
                tmp = os.path.join(tmpdir, "s")
                sock.bind(tmp)
                os.chmod(tmp, 0o600)
                sock.listen(LISTEN_BACKLOG)
                os.replace(tmp, path)
            finally:
                try:
                    os.unlink(os.path.join(tmpdir, "s"))
                except OSError:
                    pass
                os.rmdir(tmpdir)
            st = os.lstat(path)
            self._inode = (st.st_dev, st.st_ino)
        except OSError as e:
            sock.close()
            where = e.filename or path
            raise RpcServerError(f"rpc-port {path}: cannot create the socket: {where}: {e.strerror or e}") from None
        return sock

    # -- HTTP --------------------------------------------------------------------------
    def _check(self, req: Request) -> int:
        if req.method != "POST":
            raise Refusal("http", "405 Method Not Allowed", f"{req.method} is not allowed: this is momd's "
                          f"XML-RPC endpoint (POST {RPC_PATH})", {"Allow": "POST"})
        paths = (RPC_PATH, "/") if self.path else (RPC_PATH,)
        if req.path not in paths:
            raise Refusal("http", "404 Not Found", f"no {req.path} here: momd's XML-RPC endpoint is {RPC_PATH}")
        if not self.path:
            self._check_local_client(req)
        return MAX_BODY

    @staticmethod
    def _check_local_client(req: Request) -> None:
        """TCP only: refuse what a web browser on this host could send. The API
        has no authentication, and a page may POST text/plain to 127.0.0.1
        without asking (or reach it under another name by DNS rebinding).
        XML-RPC clients send text/xml, no Origin, and a loopback Host."""
        if "origin" in req.headers:
            raise Refusal("browser", "403 Forbidden", "requests from web pages (with an Origin header) are refused")
        host = req.headers.get("host", "127.0.0.1").strip().lower()
        name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
        if name not in ("127.0.0.1", "localhost", "[::1]", "::1"):
            raise Refusal("browser", "403 Forbidden", f"Host {host!r} is not this host's loopback address")
        content_type = req.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type not in ("text/xml", "application/xml"):
            raise Refusal("http", "415 Unsupported Media Type",
                          f"XML-RPC requests are text/xml, not {content_type or 'untyped'}")

    def _answer(self, req: Request) -> bytes:
        return http_response("200 OK", self.dispatcher.dispatch(req.body))

    # -- running -----------------------------------------------------------------------
    def start(self) -> None:
        self.http.start()
        log.info("RPC server listening on %s", self.describe())

    def describe(self) -> str:
        if self.path:
            return f"unix socket {self.path}"
        host, port = self.sock.getsockname()[:2]
        return f"{host}:{port}{RPC_PATH}"

    def close(self) -> None:
        """Stop serving, close everything and remove the socket file (if still ours)."""
        self.http.close()
        if self.path and self._inode is not None:
            try:
                st = os.lstat(self.path)
                if (st.st_dev, st.st_ino) == self._inode:
                    os.unlink(self.path)
            except OSError:
                pass
            self._inode = None
