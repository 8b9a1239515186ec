"""A test double of vdsm's JSON-RPC server: STOMP 1.2 frames over TLS.

Written for the tests from vdsm's public API facts, not from vdsm's code. It is
the peer of MOM's client, so it frames STOMP by hand and is strict about what
vdsm needs from a client:

- TLS with a client certificate signed by the CA it trusts (CERT_REQUIRED);
- CONNECT with ``accept-version`` containing 1.2 (and a heart-beat header) as
  the first frame; answered by CONNECTED ``version:1.2``;
- SUBSCRIBE with ``destination``, ``id`` and ``ack:auto``;
- SEND to ``jms.topic.vdsm_requests`` with ``content-type: application/json``
  and ``reply-to`` naming a subscribed destination; the JSON-RPC 2.0 answer goes
  back as a MESSAGE frame on that subscription.

Anything else is answered with an ERROR frame and noted in
:attr:`VdsmDouble.protocol_errors` (tests assert it stays empty).

It serves scripted guests (:class:`Guest`), records every call
(:attr:`VdsmDouble.calls`), applies the set calls to the guests (and KSM
tunables to a sysfs directory, as supervdsm does), can answer chosen methods
with a JSON-RPC ``error``, can stop answering (:meth:`VdsmDouble.mute`: a
vdsm whose API hangs while its STOMP server still reads frames and sends
heart-beats; such a connection is not closed from the double's side even when
the client closes it), and can stop and start again on the same port.
"""

from __future__ import annotations

import copy
import json
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mom.core.disks import IO_KEYS

REQUESTS = "jms.topic.vdsm_requests"

# vdsm's code for a VM it does not know.
NO_VM = (1, "Virtual machine does not exist")


@dataclass
class Disk:
    name: str
    path: str
    guaranteed: dict[str, int]
    maximum: dict[str, int]
    current: dict[str, int] = field(default_factory=lambda: dict.fromkeys(IO_KEYS, 0))


@dataclass
class Guest:
    """One scripted VM, reported the way vdsm reports it (many numbers as strings)."""

    vm_id: str
    name: str
    status: str = "Up"
    pid: int = 0
    mem_usage: int = 30  # percent; 0 means the guest agent is not active
    mem_total: int = 4 * 1024 * 1024  # KiB
    mem_unused: int = 2 * 1024 * 1024
    mem_free: int = 2 * 1024 * 1024 + 262144
    majflt: int = 10
    pageflt: int = 1000
    swap_in: int = 0
    swap_out: int = 0
    swap_total: int = 1024 * 1024
    swap_usage: int = 0
    balloon_max: int = 4 * 1024 * 1024
    balloon_min: int = 1024 * 1024
    balloon_cur: int = 4 * 1024 * 1024
    vcpu_user_limit: int = 100
    vcpu_quota: int = -1
    vcpu_period: int = 100000
    vcpu_count: int = 2
    disks: list[Disk] = field(default_factory=list)

    def stats(self) -> dict[str, Any]:
        vm: dict[str, Any] = {
            "vmId": self.vm_id, "vmName": self.name, "status": self.status, "pid": str(self.pid),
            "memUsage": str(self.mem_usage),
            "balloonInfo": {"balloon_max": str(self.balloon_max), "balloon_min": str(self.balloon_min),
                            "balloon_cur": str(self.balloon_cur), "balloon_target": str(self.balloon_cur)},
            "vcpuUserLimit": str(self.vcpu_user_limit), "vcpuQuota": str(self.vcpu_quota),
            "vcpuPeriod": str(self.vcpu_period), "vcpuCount": str(self.vcpu_count),
            "cpuUser": "1.5", "cpuSys": "0.5", "elapsedTime": "1234",
        }
        if self.mem_usage:
            vm["memoryStats"] = {
                "mem_total": str(self.mem_total), "mem_unused": str(self.mem_unused),
                "mem_free": str(self.mem_free), "majflt": str(self.majflt), "pageflt": str(self.pageflt),
                "swap_in": str(self.swap_in), "swap_out": str(self.swap_out),
                "swap_total": str(self.swap_total), "swap_usage": str(self.swap_usage),
            }
        else:
            vm["memoryStats"] = {}
        return vm

    def io_policy(self) -> dict[str, Any]:
        return {
            "policy": [{"name": d.name, "path": d.path, "guaranteed": dict(d.guaranteed),
                        "maximum": dict(d.maximum)} for d in self.disks],
            "current_values": [{"name": d.name, "path": d.path, "ioTune": dict(d.current)} for d in self.disks],
        }


@dataclass
class Call:
    time: float
    method: str
    params: dict[str, Any]


class ProtocolError(Exception):
    pass


# -- STOMP framing (the double's own) ---------------------------------------------------

def _unescape(value: str) -> str:
    out, i = [], 0
    table = {"\\": "\\", "n": "\n", "r": "\r", "c": ":"}
    while i < len(value):
        ch = value[i]
        if ch == "\\":
            if i + 1 >= len(value) or value[i + 1] not in table:
                raise ProtocolError(f"bad escape in header value {value!r}")
            out.append(table[value[i + 1]])
            i += 2
        else:
            out.append(ch)
            i += 1
    return "".join(out)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\r", "\\r").replace("\n", "\\n").replace(":", "\\c")


def encode_frame(command: str, headers: dict[str, str], body: bytes = b"") -> bytes:
    lines = [command]
    hdrs = dict(headers)
    if body:
        hdrs["content-length"] = str(len(body))
    for k, v in hdrs.items():
        # STOMP 1.2: CONNECT/CONNECTED headers are not escaped.
        if command in ("CONNECT", "CONNECTED"):
            lines.append(f"{k}:{v}")
        else:
            lines.append(f"{_escape(k)}:{_escape(str(v))}")
    return ("\n".join(lines) + "\n\n").encode() + body + b"\0"


class FrameReader:
    """Incremental STOMP frame parser; EOLs between frames are heart-beats."""

    def __init__(self) -> None:
        self.buf = b""
        self.heartbeats = 0

    def feed(self, data: bytes) -> list[tuple[str, dict[str, str], bytes]]:
        self.buf += data
        frames = []
        while True:
            while self.buf[:1] in (b"\n", b"\r"):
                if self.buf[:2] == b"\r\n":
                    self.buf = self.buf[2:]
                elif self.buf[:1] == b"\n":
                    self.buf = self.buf[1:]
                else:
                    break
                self.heartbeats += 1
            end = self.buf.find(b"\n\n")
            end_crlf = self.buf.find(b"\r\n\r\n")
            if end < 0 and end_crlf < 0:
                return frames
            if end_crlf >= 0 and (end < 0 or end_crlf < end):
                head, body_start = self.buf[:end_crlf], end_crlf + 4
            else:
                head, body_start = self.buf[:end], end + 2
            lines = head.decode("utf-8").replace("\r\n", "\n").split("\n")
            command, headers = lines[0], {}
            for line in lines[1:]:
                if ":" not in line:
                    raise ProtocolError(f"bad header line {line!r}")
                k, v = line.split(":", 1)
                if command != "CONNECT":
                    k, v = _unescape(k), _unescape(v)
                headers.setdefault(k, v)  # STOMP 1.2: the first of repeated headers wins
            if "content-length" in headers:
                n = int(headers["content-length"])
                if len(self.buf) < body_start + n + 1:
                    return frames
                body = self.buf[body_start:body_start + n]
                if self.buf[body_start + n:body_start + n + 1] != b"\0":
                    raise ProtocolError("frame does not end with NUL after content-length bytes")
                self.buf = self.buf[body_start + n + 1:]
            else:
                nul = self.buf.find(b"\0", body_start)
                if nul < 0:
                    return frames
                body = self.buf[body_start:nul]
                self.buf = self.buf[nul + 1:]
            frames.append((command, headers, body))


# -- the server -------------------------------------------------------------------------

class _Conn:
    """One client connection; only its own thread touches the TLS socket."""

    def __init__(self, double: VdsmDouble, sock: ssl.SSLSocket, peer: Any) -> None:
        self.double = double
        self.sock = sock
        self.peer = peer
        self.subs: dict[str, str] = {}  # destination -> subscription id
        self.connected = False
        self.closing: str | None = None  # set by stop(): "abrupt" or "graceful"
        self.send_interval = 0.0  # seconds between our heart-beats (0 = none)
        self.last_send = time.monotonic()

    def send(self, command: str, headers: dict[str, str], body: bytes = b"") -> None:
        self.sock.sendall(encode_frame(command, headers, body))
        self.last_send = time.monotonic()

    def heartbeat_due(self) -> None:
        if self.send_interval and time.monotonic() - self.last_send >= self.send_interval:
            self.sock.sendall(b"\n")
            self.last_send = time.monotonic()

    def close(self) -> None:
        if self.closing == "graceful":  # TLS close_notify, as a cleanly stopping server sends
            try:
                self.sock.settimeout(0.5)
                self.sock = self.sock.unwrap()
            except (OSError, ValueError):
                pass
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        try:
            self.sock.close()
        except OSError:
            pass


class VdsmDouble:
    """A vdsm stand-in on 127.0.0.1:port (0 = pick one; kept across restarts)."""

    def __init__(self, *, ca_cert: Path, server_cert: Path, server_key: Path, port: int = 0,
                 guests: list[Guest] | None = None, ksm_dir: Path | None = None,
                 send_heartbeats: bool = True) -> None:
        self.ca_cert, self.server_cert, self.server_key = ca_cert, server_cert, server_key
        self.port = port
        self.guests: dict[str, Guest] = {g.vm_id: g for g in (guests or [])}
        self.ksm_dir = ksm_dir
        self.send_heartbeats = send_heartbeats  # answer the client's heart-beat wish (vdsm does)
        self.lock = threading.RLock()
        self.calls: list[Call] = []
        self.connects: list[dict[str, str]] = []
        self.subscribes: list[dict[str, str]] = []
        self.tls_failures: list[str] = []
        self.protocol_errors: list[str] = []
        self.client_heartbeats = 0  # heart-beats received on closed connections
        self.errors: dict[str, tuple[int, str]] = {}  # method -> (code, message) to answer with
        self.ksm: dict[str, int] = {}
        self.muted = False
        self._mute_but: frozenset[str] = frozenset()
        self._listener: socket.socket | None = None
        self._conns: list[_Conn] = []
        self._threads: list[threading.Thread] = []
        self._running = False

    # -- life cycle ------------------------------------------------------------------
    def start(self) -> VdsmDouble:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(str(self.server_cert), str(self.server_key))
        ctx.load_verify_locations(str(self.ca_cert))
        ctx.verify_mode = ssl.CERT_REQUIRED
        self._ctx = ctx
        lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        lsock.bind(("127.0.0.1", self.port))
        lsock.listen(16)
        lsock.settimeout(0.2)
        self.port = lsock.getsockname()[1]
        self._listener = lsock
        self._running = True
        t = threading.Thread(target=self._accept_loop, args=(lsock,), name="vdsm-double-accept", daemon=True)
        t.start()
        self._threads.append(t)
        return self

    def stop(self, graceful: bool = False) -> None:
        """Close the listening socket and every connection at once: abruptly (as a
        vdsm crash would) or with a TLS close_notify first (graceful)."""
        self._running = False
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        with self.lock:
            conns, self._conns = self._conns, []
        for c in conns:
            c.closing = "graceful" if graceful else "abrupt"
        for t in self._threads:
            t.join(2)
        self._threads = []

    def restart(self, down_seconds: float = 0.0) -> None:
        self.stop()
        time.sleep(down_seconds)
        self.start()

    @property
    def running(self) -> bool:
        return self._running

    # -- scripting and observation ----------------------------------------------------
    def fail(self, method: str, message: str, code: int = 100) -> None:
        """Answer every later call of ``method`` with a JSON-RPC error."""
        with self.lock:
            self.errors[method] = (code, message)

    def mute(self, but: tuple[str, ...] = ()) -> None:
        """Stop answering requests (they are still read and recorded), except the
        methods named in ``but``."""
        with self.lock:
            self._mute_but = frozenset(but)
            self.muted = True

    def unmute(self) -> None:
        with self.lock:
            self.muted = False

    def heal(self, method: str) -> None:
        with self.lock:
            self.errors.pop(method, None)

    def calls_of(self, method: str) -> list[Call]:
        with self.lock:
            return [c for c in self.calls if c.method == method]

    def methods(self) -> list[str]:
        with self.lock:
            return [c.method for c in self.calls]

    def wait_for(self, method: str, count: int = 1, timeout: float = 15.0, **match: Any) -> list[Call]:
        """Wait until ``count`` calls of method (whose params include ``match``) arrived."""
        deadline = time.monotonic() + timeout
        while True:
            got = [c for c in self.calls_of(method) if all(c.params.get(k) == v for k, v in match.items())]
            if len(got) >= count:
                return got
            if time.monotonic() > deadline:
                raise AssertionError(f"{len(got)} of {count} {method} {match or ''} calls within {timeout} s; "
                                     f"calls: {self.methods()[-30:]}; protocol errors: {self.protocol_errors}; "
                                     f"TLS failures: {self.tls_failures}")
            time.sleep(0.05)

    # -- server internals ---------------------------------------------------------------
    def _accept_loop(self, lsock: socket.socket) -> None:
        while self._running:
            try:
                raw, peer = lsock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            t = threading.Thread(target=self._serve, args=(raw, peer), name="vdsm-double-conn", daemon=True)
            t.start()
            self._threads.append(t)

    def _serve(self, raw: socket.socket, peer: Any) -> None:
        raw.settimeout(10)
        try:
            sock = self._ctx.wrap_socket(raw, server_side=True)
        except (ssl.SSLError, OSError) as e:
            with self.lock:
                self.tls_failures.append(str(e))
            # Close without a reset (which could drop the TLS alert before the client
            # reads it): no more writes, read what the client still sends, then close.
            try:
                raw.shutdown(socket.SHUT_WR)
                raw.settimeout(1.0)
                while raw.recv(4096):
                    pass
            except OSError:
                pass
            raw.close()
            return
        sock.settimeout(0.1)
        conn = _Conn(self, sock, peer)
        with self.lock:
            if not self._running:
                conn.close()
                return
            self._conns.append(conn)
        reader = FrameReader()
        try:
            while conn.closing is None:
                try:
                    data = sock.recv(65536)
                except (TimeoutError, ssl.SSLWantReadError):
                    conn.heartbeat_due()
                    continue
                except (ssl.SSLError, OSError) as e:
                    with self.lock:
                        self.tls_failures.append(f"read: {e}")
                    return
                if not data:
                    # A hung vdsm does not close its side: hold it open while muted.
                    while self.muted and conn.closing is None:
                        time.sleep(0.05)
                    return
                for command, headers, body in reader.feed(data):
                    self._frame(conn, command, headers, body)
                    if conn.closing:
                        break
                conn.heartbeat_due()
        except ProtocolError as e:
            self._protocol_error(conn, str(e))
        except OSError:
            pass
        finally:
            conn.close()
            with self.lock:
                self.client_heartbeats += reader.heartbeats
                if conn in self._conns:
                    self._conns.remove(conn)

    def _protocol_error(self, conn: _Conn, message: str) -> None:
        with self.lock:
            self.protocol_errors.append(message)
        try:
            conn.send("ERROR", {"message": message.replace("\n", " ")[:200]}, message.encode())
        except OSError:
            pass

    def _frame(self, conn: _Conn, command: str, headers: dict[str, str], body: bytes) -> None:
        if not conn.connected:
            if command not in ("CONNECT", "STOMP"):
                raise ProtocolError(f"first frame is {command}, not CONNECT")
            if command != "CONNECT":
                raise ProtocolError("vdsm expects CONNECT, got STOMP")
            if headers.get("accept-version") != "1.2":  # vdsm insists on exactly 1.2
                raise ProtocolError(f"accept-version {headers.get('accept-version')!r}, vdsm wants '1.2'")
            if "heart-beat" not in headers:
                raise ProtocolError("CONNECT without a heart-beat header")
            with self.lock:
                self.connects.append(dict(headers))
            cx, cy = (int(x) for x in headers["heart-beat"].split(","))
            # Like vdsm: at least 1 s, and mirror the client's wishes: we send every cy ms
            # and expect the client's beats every cx ms.
            cx = max(cx, 1000) if cx else 0
            cy = max(cy, 1000) if cy else 0
            if not self.send_heartbeats:
                cy = 0
            conn.connected = True
            conn.send("CONNECTED", {"version": "1.2", "heart-beat": f"{cy},{cx}"})
            conn.send_interval = cy / 1000.0
            return
        if command == "SUBSCRIBE":
            dest, sub_id = headers.get("destination"), headers.get("id")
            if not dest or not sub_id:
                raise ProtocolError("SUBSCRIBE needs destination and id")
            if headers.get("ack", "auto") != "auto":
                raise ProtocolError(f"SUBSCRIBE ack {headers.get('ack')!r}, vdsm's client uses auto")
            with self.lock:
                self.subscribes.append(dict(headers))
            conn.subs[dest] = sub_id
            return
        if command == "UNSUBSCRIBE":
            conn.subs = {d: i for d, i in conn.subs.items() if i != headers.get("id")}
            return
        if command == "DISCONNECT":
            if "receipt" in headers:
                conn.send("RECEIPT", {"receipt-id": headers["receipt"]})
            conn.closing = "abrupt"
            return
        if command != "SEND":
            raise ProtocolError(f"unexpected frame {command}")
        if headers.get("destination") != REQUESTS:
            raise ProtocolError(f"SEND to {headers.get('destination')!r}, not {REQUESTS}")
        if headers.get("content-type", "").split(";")[0] != "application/json":
            raise ProtocolError(f"SEND content-type {headers.get('content-type')!r}")
        reply_to = headers.get("reply-to")
        if not reply_to or reply_to not in conn.subs:
            raise ProtocolError(f"SEND reply-to {reply_to!r} is not a subscribed destination")
        try:
            request = json.loads(body.decode("utf-8"))
        except ValueError as e:
            raise ProtocolError(f"body is not JSON: {e}") from None
        response = self._rpc(request)
        if response is None:
            return
        data = json.dumps(response).encode()
        # vdsm's MESSAGE frames carry destination, content-type and subscription (no message-id).
        conn.send("MESSAGE", {"destination": reply_to, "content-type": "application/json",
                              "subscription": conn.subs[reply_to]}, data)

    def _rpc(self, request: Any) -> dict[str, Any] | None:
        if not isinstance(request, dict) or request.get("jsonrpc") != "2.0" or "method" not in request:
            with self.lock:
                self.protocol_errors.append(f"not a JSON-RPC 2.0 request: {request!r}")
            return {"jsonrpc": "2.0", "id": None, "error": {"code": -32600, "message": "Invalid request"}}
        rid = request.get("id")
        method = request["method"]
        params = request.get("params", {})
        if not isinstance(params, dict):
            with self.lock:
                self.protocol_errors.append(f"{method}: params are not named: {params!r}")
            params = {}
        with self.lock:
            self.calls.append(Call(time.monotonic(), method, copy.deepcopy(params)))
            failure = self.errors.get(method)
            silent = self.muted and method not in self._mute_but
        if rid is None or silent:
            return None  # a notification, or the double is not answering
        if failure is not None:
            return {"jsonrpc": "2.0", "id": rid, "error": {"code": failure[0], "message": failure[1]}}
        try:
            result = self._handle(method, params)
        except _RpcError as e:
            return {"jsonrpc": "2.0", "id": rid, "error": {"code": e.code, "message": e.message}}
        return {"jsonrpc": "2.0", "id": rid, "result": result}

    def _guest(self, params: dict[str, Any]) -> Guest:
        if "vmID" not in params:
            raise _RpcError(-32602, f"missing parameter vmID in {sorted(params)}")
        g = self.guests.get(params["vmID"])
        if g is None:
            raise _RpcError(*NO_VM)
        return g

    def _handle(self, method: str, params: dict[str, Any]) -> Any:
        with self.lock:
            if method == "Host.ping2":
                return True
            if method == "Host.getAllVmStats":
                return [g.stats() for g in self.guests.values()]
            if method == "Host.getAllVmIoTunePolicies":
                return {g.vm_id: g.io_policy() for g in self.guests.values() if g.status == "Up"}
            if method == "VM.setBalloonTarget":
                g = self._guest(params)
                g.balloon_cur = int(params["target"])
                return True
            if method == "VM.setCpuTuneQuota":
                g = self._guest(params)
                g.vcpu_quota = int(params["quota"])
                return True
            if method == "VM.setCpuTunePeriod":
                g = self._guest(params)
                g.vcpu_period = int(params["period"])
                return True
            if method == "VM.setIoTune":
                g = self._guest(params)
                for tune in params["tunables"]:
                    disk = next((d for d in g.disks if d.path == tune.get("path") or d.name == tune.get("name")),
                                None)
                    if disk is None:
                        raise _RpcError(-32602, f"no disk {tune.get('name')!r}")
                    disk.current.update({k: int(v) for k, v in tune["ioTune"].items()})
                return True
            if method == "Host.setKsmTune":
                tuning = params["tuningParams"]
                self.ksm.update({k: int(v) for k, v in tuning.items()})
                if self.ksm_dir is not None:  # what supervdsm does on a real host
                    for k, v in tuning.items():
                        (self.ksm_dir / k).write_text(f"{int(v)}\n")
                return True
        raise _RpcError(-32601, f"The method does not exist or is not available: {method}")


class _RpcError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
