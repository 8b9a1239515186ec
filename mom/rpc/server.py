"""The XML-RPC transport: HTTP POST over TCP (127.0.0.1 only) or a unix socket.

MOM's RPC has no authentication, as the original's, so it is only reachable
from the host: TCP binds the loopback address, a unix socket is created with
mode 0600. It must also survive bad clients:

- One selector thread accepts connections and reads requests without
  blocking; a fixed pool of worker threads parses complete requests, calls the
  methods and writes the answers. The thread count never depends on the
  number of clients.
- A request must arrive whole within REQUEST_TIMEOUT seconds of the
  connection (slow or idle clients are cut off); headers are limited to
  MAX_HEADER bytes and bodies to MAX_BODY (1 MiB): a bigger one gets HTTP 413
  as soon as its Content-Length (or its bytes) say so.
- Bodies with a DOCTYPE or an ENTITY declaration (or in an encoding that
  could hide one: UTF-16/32, EBCDIC...) are refused with an XML-RPC fault
  before any parsing, so no entity is ever expanded; malformed XML gets a
  fault from the parser.
- At most MAX_CONNECTIONS connections are open at once; more are closed at
  once rather than queued without bound.

Integers beyond 32 bits travel as ``<i8>`` and ``None`` as ``<nil/>``.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import selectors
import socket
import stat
import tempfile
import threading
import time
import xmlrpc.client
from typing import Any, Callable
from xml.parsers.expat import ExpatError

from mom.daemon.pool import CallPool

log = logging.getLogger("mom.rpc")

MAX_BODY = 1 << 20
MAX_HEADER = 16 << 10
MAX_CONNECTIONS = 256
REQUEST_TIMEOUT = 5.0
WRITE_TIMEOUT = 5.0
WORKERS = 4
RPC_PATH = "/RPC2"

# Fault codes (the original used the stdlib's: 1 for any exception in a method).
FAULT_METHOD = 1
FAULT_NO_METHOD = 2
FAULT_BAD_REQUEST = 3
FAULT_REFUSED = 4


class RpcServerError(Exception):
    """The server cannot listen where it is told to (one line)."""


class _I8Marshaller(xmlrpc.client.Marshaller):
    """The stdlib's marshaller, sending integers beyond 32 bits as <i8>."""

    dispatch = dict(xmlrpc.client.Marshaller.dispatch)

    def dump_int(self, value: int, write: Callable[[str], Any]) -> None:
        tag = "int" if -2**31 <= value < 2**31 else "i8"
        if not -2**63 <= value < 2**63:
            raise OverflowError("int exceeds XML-RPC limits")
        write(f"<value><{tag}>{int(value)}</{tag}></value>\n")

    dispatch[int] = dump_int


def dumps_response(value: Any) -> bytes:
    """A methodResponse carrying value or an xmlrpc.client.Fault."""
    m = _I8Marshaller("utf-8", allow_none=True)
    if isinstance(value, xmlrpc.client.Fault):
        body = m.dumps(value)
    else:
        body = m.dumps((value,))
    return ("<?xml version='1.0' encoding='utf-8'?>\n<methodResponse>\n" + body
            + "</methodResponse>\n").encode("utf-8", "xmlcharrefreplace")


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


class Dispatcher:
    """Method name -> callable, with system.listMethods."""

    def __init__(self) -> None:
        self.methods: dict[str, Callable[..., Any]] = {}
        self.methods["system.listMethods"] = self.list_methods

    def register(self, name: str, fn: Callable[..., Any]) -> None:
        self.methods[name] = fn

    def list_methods(self) -> list[str]:
        return sorted(self.methods)

    def dispatch(self, body: bytes) -> bytes:
        refused = _refused_markup(body)
        if refused:
            return dumps_response(xmlrpc.client.Fault(FAULT_REFUSED, refused))
        try:
            params, name = xmlrpc.client.loads(body, use_builtin_types=True)
        except (ExpatError, ValueError, TypeError, IndexError, KeyError, xmlrpc.client.ResponseError) as e:
            return dumps_response(xmlrpc.client.Fault(FAULT_BAD_REQUEST, f"malformed request: {e}"))
        if name is None:
            return dumps_response(xmlrpc.client.Fault(FAULT_BAD_REQUEST, "malformed request: no methodName"))
        log.debug("RPC %s%s", name, "(...)" if params else "()")
        fn = self.methods.get(name)
        if fn is None:
            return dumps_response(xmlrpc.client.Fault(FAULT_NO_METHOD, f'method "{name}" is not supported'))
        try:
            result = fn(*params)
        except xmlrpc.client.Fault as f:
            return dumps_response(f)
        except TypeError as e:
            if "positional argument" in str(e) or "takes" in str(e):
                return dumps_response(xmlrpc.client.Fault(FAULT_BAD_REQUEST, f"{name}: {e}"))
            log.exception("RPC %s failed", name)
            return dumps_response(xmlrpc.client.Fault(FAULT_METHOD, f"{name}: {type(e).__name__}: {e}"))
        except Exception as e:  # noqa: BLE001 - a failing method is a fault, never a dead server
            log.exception("RPC %s failed", name)
            return dumps_response(xmlrpc.client.Fault(FAULT_METHOD, f"{name}: {type(e).__name__}: {e}"))
        try:
            return dumps_response(result)
        except (TypeError, OverflowError) as e:
            log.error("RPC %s: cannot marshal the result: %s", name, e)
            return dumps_response(xmlrpc.client.Fault(FAULT_METHOD, f"{name}: cannot marshal the result: {e}"))


class _Conn:
    __slots__ = ("sock", "buf", "deadline", "need", "start")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = bytearray()
        self.deadline = time.monotonic() + REQUEST_TIMEOUT
        self.need: int | None = None  # total bytes (headers + body) once the headers are known
        self.start = 0  # where the body starts


def _http_response(status: str, body: bytes, content_type: str = "text/xml") -> bytes:
    head = (f"HTTP/1.0 {status}\r\nServer: momd\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n")
    return head.encode("ascii") + body


class RpcServer:
    """Listens at construction (so errors show at startup); serves after start()."""

    def __init__(self, dispatcher: Dispatcher, *, port: int | None = None, path: str | None = None,
                 workers: int = WORKERS) -> None:
        if (port is None) == (path is None):
            raise ValueError("give exactly one of port and path")
        self.dispatcher = dispatcher
        self.path = os.path.abspath(path) if path else None
        self._inode: tuple[int, int] | None = None
        self.sock = self._listen_unix(self.path) if self.path else self._listen_tcp(port or 0)
        self.sock.setblocking(False)
        self.address = self.path or self.sock.getsockname()
        self._workers = workers
        self._pool: CallPool | None = None
        self._thread: threading.Thread | None = None
        self._wake_r, self._wake_w = socket.socketpair()
        self._stopping = False
        self._open = 0  # connections open (reading or in a worker)
        self._open_lock = threading.Lock()

    # -- listening ---------------------------------------------------------------------
    @staticmethod
    def _listen_tcp(port: int) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))  # never beyond the host: there is no authentication
            sock.listen(128)
        except OSError as e:
            sock.close()
            raise RpcServerError(f"rpc-port {port}: cannot listen on 127.0.0.1:{port}: {e.strerror or e}") from None
        return sock

    def _listen_unix(self, path: str) -> socket.socket:
        directory = os.path.dirname(path) or "."
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            st = None
        except OSError as e:
            raise RpcServerError(f"rpc-port {path}: {e.strerror}") from None
        if st is not None:
            if not stat.S_ISSOCK(st.st_mode):
                raise RpcServerError(f"rpc-port {path}: exists and is not a socket; not replacing it")
            probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            probe.settimeout(1.0)
            try:
                probe.connect(path)
            except OSError:
                pass  # stale: nobody listens there; it is replaced below
            else:
                raise RpcServerError(f"rpc-port {path}: another process is listening on this socket")
            finally:
                probe.close()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            # Bind in a private directory, make the socket 0600, then move it into
            # place: it is never reachable with looser permissions.
            tmpdir = tempfile.mkdtemp(prefix=".momd-rpc-", dir=directory)
            try:
                tmp = os.path.join(tmpdir, "s")
                sock.bind(tmp)
                os.chmod(tmp, 0o600)
                sock.listen(128)
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

    # -- running -----------------------------------------------------------------------
    def start(self) -> None:
        # Daemon threads: a worker stuck on a slow client never holds up momd's exit.
        self._pool = CallPool(self._workers, "mom-rpc-worker")
        self._thread = threading.Thread(target=self._loop, name="mom-rpc", daemon=True)
        self._thread.start()
        log.info("RPC server listening on %s", self.describe())

    def describe(self) -> str:
        if self.path:
            return f"unix socket {self.path}"
        host, port = self.address[:2]
        return f"{host}:{port}{RPC_PATH}"

    def close(self) -> None:
        """Stop serving, close everything and remove the socket file (if still ours)."""
        self._stopping = True
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass
        if self._thread is not None:
            self._thread.join(5)
        if self._pool is not None:
            self._pool.shutdown()
        self.sock.close()
        self._wake_r.close()
        self._wake_w.close()
        if self.path and self._inode is not None:
            try:
                st = os.lstat(self.path)
                if (st.st_dev, st.st_ino) == self._inode:
                    os.unlink(self.path)
            except OSError:
                pass
            self._inode = None

    def _loop(self) -> None:
        sel = selectors.DefaultSelector()
        sel.register(self.sock, selectors.EVENT_READ, None)
        sel.register(self._wake_r, selectors.EVENT_READ, "wake")
        conns: dict[socket.socket, _Conn] = {}
        try:
            while not self._stopping:
                timeout = None
                if conns:
                    timeout = max(0.0, min(c.deadline for c in conns.values()) - time.monotonic())
                for key, _ in sel.select(timeout):
                    if key.data == "wake":
                        return
                    try:
                        if key.data is None:
                            self._accept(sel, conns)
                        else:
                            self._read(sel, conns, key.data)
                    except Exception:  # noqa: BLE001 - one bad connection must not end the server
                        log.exception("RPC: dropping a connection after an unexpected error")
                        if key.data is not None:
                            self._drop(sel, conns, key.data, b"")
                now = time.monotonic()
                for c in [c for c in conns.values() if c.deadline <= now]:
                    self._drop(sel, conns, c, b"" if not c.buf else
                               _http_response("408 Request Timeout", b"request timeout\n", "text/plain"))
        except Exception:  # noqa: BLE001
            log.exception("RPC server loop failed")
        finally:
            for c in list(conns.values()):
                self._drop(sel, conns, c, b"")
            sel.close()

    def _accept(self, sel: selectors.BaseSelector, conns: dict[socket.socket, _Conn]) -> None:
        for _ in range(64):  # drain the backlog, a bounded batch at a time
            try:
                sock, _addr = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                log.warning("RPC: cannot accept: %s", e.strerror or e)
                return
            with self._open_lock:
                full = self._open >= MAX_CONNECTIONS
                if not full:
                    self._open += 1
            if full:
                sock.close()
                continue
            sock.setblocking(False)
            c = _Conn(sock)
            conns[sock] = c
            sel.register(sock, selectors.EVENT_READ, c)

    def _release(self) -> None:
        with self._open_lock:
            self._open -= 1

    def _drop(self, sel: selectors.BaseSelector, conns: dict[socket.socket, _Conn], c: _Conn,
              reply: bytes) -> None:
        try:
            sel.unregister(c.sock)
        except (KeyError, ValueError):
            pass
        if conns.pop(c.sock, None) is None:
            return  # already dropped
        if reply:
            try:
                c.sock.send(reply)  # best effort, non-blocking: the client is misbehaving anyway
            except OSError:
                pass
        try:
            c.sock.close()
        finally:
            self._release()

    def _read(self, sel: selectors.BaseSelector, conns: dict[socket.socket, _Conn], c: _Conn) -> None:
        try:
            data = c.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._drop(sel, conns, c, b"")
            return
        if not data:
            self._drop(sel, conns, c, b"")
            return
        c.buf += data
        if c.need is None:
            end = c.buf.find(b"\r\n\r\n")
            if end < 0:
                if len(c.buf) > MAX_HEADER:
                    self._drop(sel, conns, c, _http_response("431 Request Header Fields Too Large",
                                                             b"headers too large\n", "text/plain"))
                return
            if end > MAX_HEADER:
                self._drop(sel, conns, c, _http_response("431 Request Header Fields Too Large",
                                                         b"headers too large\n", "text/plain"))
                return
            problem, length = self._check_headers(bytes(c.buf[:end]))
            if problem:
                self._drop(sel, conns, c, _http_response(problem, problem.encode() + b"\n", "text/plain"))
                return
            c.start = end + 4
            c.need = c.start + length
        if len(c.buf) > c.need:
            c.buf = c.buf[:c.need]  # a pipelined second request is not served (HTTP/1.0, one per connection)
        if len(c.buf) >= c.need:
            sel.unregister(c.sock)
            conns.pop(c.sock, None)
            assert self._pool is not None
            body = bytes(c.buf[c.start:c.need])
            self._pool.submit(self._serve, c.sock, body)

    def _check_headers(self, head: bytes) -> tuple[str, int]:
        """('' , content length) or (HTTP status, 0) for a request to refuse."""
        try:
            text = head.decode("latin-1")
        except UnicodeDecodeError:  # pragma: no cover - latin-1 decodes anything
            return "400 Bad Request", 0
        lines = text.split("\r\n")
        parts = lines[0].split()
        if len(parts) != 3 or not parts[2].startswith("HTTP/"):
            return "400 Bad Request", 0
        method, target = parts[0], parts[1]
        if method != "POST":
            return "405 Method Not Allowed", 0
        paths = (RPC_PATH, "/") if self.path else (RPC_PATH,)
        if target not in paths:
            return "404 Not Found", 0
        length = None
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if not sep:
                return "400 Bad Request", 0
            name = name.strip().lower()
            if name == "content-length":
                value = value.strip()
                # ASCII digits only: str.isdigit() also accepts '²', which int() rejects
                if not re.fullmatch(r"[0-9]{1,12}", value) or (length is not None and int(value) != length):
                    return "400 Bad Request", 0
                length = int(value)
            elif name == "transfer-encoding":
                return "411 Length Required", 0
        if length is None:
            return "411 Length Required", 0
        if length > MAX_BODY:
            return "413 Payload Too Large", 0
        return "", length

    def _serve(self, sock: socket.socket, body: bytes) -> None:
        try:
            response = self.dispatcher.dispatch(body)
            sock.setblocking(True)
            sock.settimeout(WRITE_TIMEOUT)
            sock.sendall(_http_response("200 OK", response))
            try:
                sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass
        except OSError:
            pass  # the client went away or does not read: its loss
        except Exception:  # noqa: BLE001
            log.exception("RPC request failed")
        finally:
            sock.close()
            self._release()
