"""GuestQemuAgent: a guest's memory statistics read inside the guest through the
QEMU guest agent (qemu-ga): its /proc/meminfo and /proc/vmstat.

Two ways to reach the agent, tried in this order (as the original MOM did):

1. the hypervisor interface's agent command (libvirt's ``qemuAgentCommand``),
   when the interface has one (:meth:`qemu_agent_command`);
2. the agent's unix socket ``socket_path/socket_name_template``, the settings
   of ``[Collector: GuestQemuAgent]`` (defaults ``/var/lib/libvirt/qemu`` and
   ``%(name)s.agent``; ``%(name)s`` is the guest's name), when it exists.

The way that worked is remembered per guest. Raises CollectionError when
neither works or the agent answers with an error.

Fields (KiB unless said):

- mem_available: MemTotal; mem_unused: MemFree;
  mem_free: MemFree + Buffers + Cached.
- major_fault, minor_fault: pgmajfault, pgfault (cumulative counts).
- swap_in, swap_out: pages swapped in/out since the previous collection
  (pswpin, pswpout; 0 the first time).
- swap_total: SwapTotal; swap_usage: SwapTotal - SwapFree.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import socket
import time
from collections.abc import Callable, Mapping
from typing import Any

from mom.collectors.base import CollectionError, Collector, CollectorContext, GuestSubject, parse_key_values, register
from mom.core.errors import MomError
from mom.hypervisors.base import Capability, GuestInfo, HypervisorError

log = logging.getLogger("mom.Collectors.GuestQemuAgent")

DEFAULT_SOCKET_PATH = "/var/lib/libvirt/qemu"
DEFAULT_SOCKET_TEMPLATE = "%(name)s.agent"
READ_CHUNK = 65536
MAX_FILE = 1 << 20


class AgentError(MomError):
    """The agent could not be reached or answered with an error."""


class SocketAgent:
    """A qemu-ga client over its unix socket (a persistent connection, synced with guest-sync)."""

    def __init__(self, path: str, timeout: float = 2.0) -> None:
        self.path = path
        self.timeout = timeout
        self.sock: socket.socket | None = None
        self._buf = b""

    def close(self) -> None:
        if self.sock is not None:
            try:
                self.sock.close()
            except OSError:
                pass
        self.sock = None
        self._buf = b""

    def _line(self) -> dict[str, Any]:
        assert self.sock is not None
        while b"\n" not in self._buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise AgentError(f"agent socket {self.path} closed")
            self._buf += chunk
            if len(self._buf) > 4 * MAX_FILE:
                raise AgentError(f"agent socket {self.path}: reply too long")
        line, self._buf = self._buf.split(b"\n", 1)
        try:
            reply: dict[str, Any] = json.loads(line.lstrip(b"\xff"))
            return reply
        except ValueError:
            raise AgentError(f"agent socket {self.path}: bad reply {line[:80]!r}") from None

    def _connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.path)
        except OSError as e:
            sock.close()
            raise AgentError(f"cannot connect to agent socket {self.path}: {e.strerror or e}") from None
        self.sock, self._buf = sock, b""
        # Skip stale replies of an earlier session: wait for the answer to our own sync id.
        token = int(time.time() * 1000) % 2147483647
        sock.sendall(b"\xff" + json.dumps({"execute": "guest-sync-delimited", "arguments": {"id": token}}).encode())
        for _ in range(100):
            reply = self._line()
            if reply.get("return") == token:
                return
        raise AgentError(f"agent socket {self.path}: no guest-sync answer")

    def command(self, request: dict[str, Any]) -> Any:
        try:
            if self.sock is None:
                self._connect()
            assert self.sock is not None
            self.sock.sendall(json.dumps(request).encode())
            reply = self._line()
        except (OSError, AgentError) as e:
            self.close()
            raise AgentError(str(e) if isinstance(e, AgentError) else f"agent socket {self.path}: {e}") from None
        if "error" in reply:
            err = reply["error"]
            raise AgentError(f"agent error {err.get('class', '?')}: {err.get('desc', '')}")
        return reply.get("return")


@register
class GuestQemuAgent(Collector):
    """Guest memory statistics from inside the guest, through the QEMU guest agent."""

    name = "GuestQemuAgent"
    scope = "guest"
    blocking = True  # an agent can take seconds to answer, or never
    mandatory = frozenset({"mem_available", "mem_unused", "mem_free", "major_fault", "minor_fault",
                           "swap_in", "swap_out", "swap_total", "swap_usage"})

    def __init__(self, ctx: CollectorContext, settings: Mapping[str, str] | None = None) -> None:
        super().__init__(ctx, settings)
        self.socket_path = self.settings.get("socket_path") or DEFAULT_SOCKET_PATH
        self.socket_template = self.settings.get("socket_name_template") or DEFAULT_SOCKET_TEMPLATE
        self._sockets: dict[str, SocketAgent] = {}
        self._via: dict[str, str] = {}  # uuid -> "hypervisor" or "socket"
        self._swap: dict[str, tuple[int, int]] = {}  # uuid -> (pswpin, pswpout) at the last collection

    # -- reaching the agent -----------------------------------------------------------
    def socket_for(self, info: GuestInfo) -> str:
        try:
            name = self.socket_template % {"name": info.name}
        except (KeyError, ValueError, TypeError) as e:
            log.warning("socket_name_template %r is not usable (%s); using %s.agent",
                        self.socket_template, e, info.name)
            name = f"{info.name}.agent"
        return os.path.join(self.socket_path, name)

    def _ways(self, info: GuestInfo) -> list[tuple[str, Callable[[dict[str, Any]], Any]]]:
        ways: list[tuple[str, Callable[[dict[str, Any]], Any]]] = []
        hv = self.ctx.hypervisor
        if hv is not None and hv.supports(Capability.GUEST_AGENT):
            agent_cmd = hv.qemu_agent_command

            def via_hypervisor(request: dict[str, Any]) -> Any:
                try:
                    return agent_cmd(info, request)
                except HypervisorError as e:
                    raise AgentError(str(e)) from None
            ways.append(("hypervisor", via_hypervisor))
        path = self.socket_for(info)
        if os.path.exists(path):
            agent = self._sockets.get(info.uuid)
            if agent is None or agent.path != path:
                agent = self._sockets[info.uuid] = SocketAgent(path)
            ways.append(("socket", agent.command))
        preferred = self._via.get(info.uuid)
        ways.sort(key=lambda w: w[0] != preferred)
        return ways

    def _command(self, info: GuestInfo, request: dict[str, Any]) -> Any:
        ways = self._ways(info)
        if not ways:
            raise CollectionError(f"{self.name}: guest {info.name}: no agent: the hypervisor interface has no "
                                  f"agent command and {self.socket_for(info)} does not exist")
        errors = []
        for via, call in ways:
            try:
                result = call(request)
            except AgentError as e:
                errors.append(f"{via}: {e}")
                continue
            self._via[info.uuid] = via
            return result
        raise CollectionError(f"{self.name}: guest {info.name}: {'; '.join(errors)}")

    def read_file(self, info: GuestInfo, path: str) -> str:
        handle = self._command(info, {"execute": "guest-file-open", "arguments": {"path": path, "mode": "r"}})
        data = b""
        try:
            while True:
                ret = self._command(info, {"execute": "guest-file-read",
                                           "arguments": {"handle": handle, "count": READ_CHUNK}})
                data += base64.b64decode(ret.get("buf-b64", ""))
                if ret.get("eof") or not ret.get("count"):
                    break
                if len(data) > MAX_FILE:
                    raise CollectionError(f"{self.name}: guest {info.name}: {path} is too large")
        finally:
            try:
                self._command(info, {"execute": "guest-file-close", "arguments": {"handle": handle}})
            except CollectionError:
                pass
        return data.decode("utf-8", "replace")

    # -- collection ----------------------------------------------------------------------
    def collect(self, subject: GuestSubject | None) -> dict[str, Any]:
        if subject is None:
            raise CollectionError(f"{self.name}: needs a guest subject")
        info = subject.info
        meminfo = parse_key_values(self.read_file(info, "/proc/meminfo"), f"guest {info.name}: /proc/meminfo")
        vmstat = parse_key_values(self.read_file(info, "/proc/vmstat"), f"guest {info.name}: /proc/vmstat")
        need = [("MemTotal", meminfo), ("MemFree", meminfo), ("pgfault", vmstat), ("pgmajfault", vmstat)]
        missing = [k for k, table in need if k not in table]
        if missing:
            raise CollectionError(f"{self.name}: guest {info.name}: the agent's files lack {', '.join(missing)}")
        swapin, swapout = vmstat.get("pswpin", 0), vmstat.get("pswpout", 0)
        prev = self._swap.get(info.uuid, (swapin, swapout))
        self._swap[info.uuid] = (swapin, swapout)
        free = meminfo["MemFree"] + meminfo.get("Buffers", 0) + meminfo.get("Cached", 0)
        swap_total = meminfo.get("SwapTotal", 0)
        return {
            "mem_available": meminfo["MemTotal"], "mem_unused": meminfo["MemFree"], "mem_free": free,
            "major_fault": vmstat["pgmajfault"], "minor_fault": vmstat["pgfault"],
            "swap_in": max(0, swapin - prev[0]), "swap_out": max(0, swapout - prev[1]),
            "swap_total": swap_total, "swap_usage": swap_total - meminfo.get("SwapFree", swap_total),
        }

    def forget(self, uuid: str) -> None:
        """Drop the state of a guest that went away."""
        agent = self._sockets.pop(uuid, None)
        if agent is not None:
            agent.close()
        self._via.pop(uuid, None)
        self._swap.pop(uuid, None)


__all__ = ["GuestQemuAgent", "SocketAgent"]
