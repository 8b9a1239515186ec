"""Helpers for the RPC tests: a momd configuration for the simulated host with its
RPC on a unix socket or a TCP port, and XML-RPC clients built from the stdlib
the way vdsm (unix socket, 2-second timeout) and the original's client (TCP)
build theirs. The daemon itself is tests.support.momd's Momd."""

from __future__ import annotations

import base64
import http.client
import socket
import xmlrpc.client
from pathlib import Path
from typing import Any

from tests.support.momd import REPO

VDSM_TIMEOUT = 2  # vdsm's CONNECTION_TIMEOUT_SEC for its MOM client

SCENARIO = """name = "rpc"
seed = 5
step = 1.0

[host]
memory = {memory}
swap = 1024
cpus = 4
base_used = 512
cache = 64

[ksm]
run = 0
pages_to_scan = 100
sleep_millisecs = 20
merge_across_nodes = 1
"""
GUEST = """
[[guest]]
name = "{name}"
max = {max}
min = 256
vcpus = 2
shareable = 0.3
workload = {{ type = "steady", level = {level} }}
"""


def scenario(guests: int = 3, memory: int = 4096, guest_max: int = 2048, level: int = 1200) -> str:
    return SCENARIO.format(memory=memory) + "".join(
        GUEST.format(name=f"vm{i + 1}", max=guest_max, level=level) for i in range(guests))


def write_config(tmp_path: Path, *, rpc: str, scenario_text: str | None = None, policy_dir: str | None = None,
                 policy: str | None = None, controllers: str = "Balloon, KSM",
                 host_collectors: str = "HostMemory, HostKSM, HostCpu",
                 guest_collectors: str = "GuestMemory, GuestBalloon", metrics: str = "",
                 speed: float = 20, interval: float = 1, policy_interval: float = 2) -> Path:
    scen = tmp_path / "scenario.toml"
    scen.write_text(scenario_text or scenario())
    if policy is None and policy_dir is None:
        policy_dir = str(REPO / "doc" / "policies")
    lines = ["[main]", "hypervisor-interface: sim"]
    for key in ("main-loop-interval", "host-monitor-interval", "guest-monitor-interval", "guest-manager-interval"):
        lines.append(f"{key}: {interval}")
    lines += [f"policy-engine-interval: {policy_interval}", "sample-history-length: 3",
              f"controllers: {controllers}", f"rpc-port: {rpc}", f"record-file: {tmp_path / 'record.jsonl'}",
              f"metrics-address: {metrics}", "hypervisor-call-timeout: 5"]
    if policy_dir:
        lines.append(f"policy-dir: {policy_dir}")
    if policy:
        lines.append(f"policy: {policy}")
    lines += ["", "[sim]", f"scenario: {scen}", "seed: 5", f"speed: {speed}", f"tree-dir: {tmp_path / 'tree'}",
              "", "[logging]", "log: stdio", "verbosity: info", "",
              "[host]", f"collectors: {host_collectors}", "", "[guest]", f"collectors: {guest_collectors}", ""]
    path = tmp_path / "mom.conf"
    path.write_text("\n".join(lines))
    return path


# -- clients ---------------------------------------------------------------------------------

class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self._path)


class _UnixTransport(xmlrpc.client.Transport):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__()
        self._path, self._timeout = path, timeout

    def make_connection(self, host: Any) -> http.client.HTTPConnection:
        return _UnixHTTPConnection(self._path, self._timeout)


def unix_client(path: str | Path, timeout: float = VDSM_TIMEOUT) -> xmlrpc.client.ServerProxy:
    """As vdsm's UnixXmlRpcClient: the socket path hidden in the host part, allow_none."""
    host = base64.b16encode(str(path).encode()).decode()
    return xmlrpc.client.ServerProxy(f"http://{host}", transport=_UnixTransport(str(path), timeout),
                                     allow_none=True)


def tcp_client(port: int) -> xmlrpc.client.ServerProxy:
    """As the original's client: http://localhost:PORT/RPC2."""
    return xmlrpc.client.ServerProxy(f"http://127.0.0.1:{port}/RPC2", allow_none=True)


def raw_request(address: str | tuple[str, int], data: bytes, timeout: float = 3.0) -> bytes:
    """Send bytes, read until the server closes; what it answered (b'' if it just closed)."""
    family = socket.AF_UNIX if isinstance(address, str) else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(address)
        try:
            s.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass
        out = b""
        try:
            while chunk := s.recv(65536):
                out += chunk
        except ConnectionResetError:
            pass
        return out


def post(body: bytes, path: str = "/RPC2", length: int | None = None) -> bytes:
    head = (f"POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: text/xml\r\n"
            f"Content-Length: {len(body) if length is None else length}\r\n\r\n")
    return head.encode() + body
