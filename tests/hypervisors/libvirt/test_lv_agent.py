"""GuestQemuAgent: /proc/meminfo and /proc/vmstat read through the QEMU guest agent,
through the hypervisor's agent command or the agent's unix socket."""

from __future__ import annotations

import base64
import json
import socket
import threading
from pathlib import Path
from typing import Any

import pytest

from mom.collectors.base import REGISTRY, CollectionError, CollectorContext, GuestSubject
from mom.collectors.guest_qemu_agent import GuestQemuAgent
from mom.hypervisors.base import Capability, GuestInfo, HypervisorError, HypervisorInterface

MEMINFO = "MemTotal:  1000000 kB\nMemFree:  200000 kB\nBuffers:  10000 kB\nCached:  90000 kB\n" \
          "SwapTotal:  500000 kB\nSwapFree:  400000 kB\n"
VMSTAT = "pgfault 12345\npgmajfault 67\npswpin 100\npswpout 200\n"
INFO = GuestInfo(uuid="11111111-2222-3333-4444-555555555555", name="vm1", pid=None)


class FakeGuestAgent:
    """qemu-ga's file commands over an in-memory guest file system."""

    def __init__(self, files: dict[str, str]) -> None:
        self.files = files
        self.handles: dict[int, list] = {}
        self.commands: list[str] = []

    def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        cmd, args = request["execute"], request.get("arguments", {})
        self.commands.append(cmd)
        if cmd == "guest-file-open":
            if args["path"] not in self.files:
                return {"error": {"class": "GenericError", "desc": f"open {args['path']}: No such file"}}
            h = len(self.handles) + 1000
            self.handles[h] = [self.files[args["path"]].encode(), 0]
            return {"return": h}
        if cmd == "guest-file-read":
            data, pos = self.handles[args["handle"]]
            chunk = data[pos:pos + 7]  # small reads: the collector must loop
            self.handles[args["handle"]][1] = pos + len(chunk)
            return {"return": {"count": len(chunk), "buf-b64": base64.b64encode(chunk).decode(),
                               "eof": pos + len(chunk) >= len(data)}}
        if cmd == "guest-file-close":
            self.handles.pop(args["handle"], None)
            return {"return": {}}
        if cmd in ("guest-sync", "guest-sync-delimited"):
            return {"return": args["id"]}
        return {"error": {"class": "CommandNotFound", "desc": cmd}}


class AgentHypervisor(HypervisorInterface):
    """A hypervisor interface with an agent command (as LibvirtHypervisor has)."""

    capabilities = frozenset({Capability.GUEST_AGENT})

    def __init__(self, agent: FakeGuestAgent | None) -> None:
        super().__init__()
        self.agent = agent

    def list_guests(self) -> list[GuestInfo]:
        return []

    def qemu_agent_command(self, guest: GuestInfo, command: Any, timeout: int = 10) -> Any:
        if self.agent is None:
            raise HypervisorError(f"guest {guest.name}: this function is not supported")
        reply = self.agent.handle(command if isinstance(command, dict) else json.loads(command))
        if "error" in reply:
            raise HypervisorError(f"agent error {reply['error']['class']}: {reply['error']['desc']}")
        return reply["return"]


def collector(hv: Any, **settings: str) -> GuestQemuAgent:
    return GuestQemuAgent(CollectorContext(hypervisor=hv), settings)


def test_registered() -> None:
    assert REGISTRY["GuestQemuAgent"] is GuestQemuAgent


def test_through_the_hypervisor_agent_command() -> None:
    agent = FakeGuestAgent({"/proc/meminfo": MEMINFO, "/proc/vmstat": VMSTAT})
    c = collector(AgentHypervisor(agent))
    row = c.collect(GuestSubject(INFO))
    assert row == {"mem_available": 1000000, "mem_unused": 200000, "mem_free": 300000, "major_fault": 67,
                   "minor_fault": 12345, "swap_in": 0, "swap_out": 0, "swap_total": 500000, "swap_usage": 100000}
    assert set(row) == GuestQemuAgent.fields()
    agent.files["/proc/vmstat"] = "pgfault 12400\npgmajfault 70\npswpin 130\npswpout 205\n"
    row = c.collect(GuestSubject(INFO))
    assert (row["swap_in"], row["swap_out"], row["minor_fault"]) == (30, 5, 12400)
    assert not agent.handles  # every file was closed


def test_agent_error_is_a_collection_error() -> None:
    c = collector(AgentHypervisor(FakeGuestAgent({"/proc/meminfo": MEMINFO})))
    with pytest.raises(CollectionError, match="No such file"):
        c.collect(GuestSubject(INFO))


class SocketServer:
    """A qemu-ga look-alike on a unix socket (one client at a time)."""

    def __init__(self, path: Path, agent: FakeGuestAgent) -> None:
        self.agent = agent
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(str(path))
        self.sock.listen(1)
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self) -> None:
        while True:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            with client:
                client.sendall(b'{"return": 7}\n')  # a stale reply of an earlier session
                buf = b""
                while True:
                    data = client.recv(4096)
                    if not data:
                        break
                    buf += data
                    while True:
                        buf = buf.lstrip(b"\xff")
                        try:
                            request, end = json.JSONDecoder().raw_decode(buf.decode())
                        except ValueError:
                            break
                        buf = buf[len(buf.decode()[:end].encode()):]
                        prefix = b"\xff" if request["execute"] == "guest-sync-delimited" else b""
                        client.sendall(prefix + json.dumps(self.agent.handle(request)).encode() + b"\n")

    def close(self) -> None:
        self.sock.close()


def test_through_the_socket_with_the_original_settings(tmp_path: Path) -> None:
    agent = FakeGuestAgent({"/proc/meminfo": MEMINFO, "/proc/vmstat": VMSTAT})
    server = SocketServer(tmp_path / "org.qemu.vm1.sock", agent)
    try:
        c = collector(None, socket_path=str(tmp_path), socket_name_template="org.qemu.%(name)s.sock")
        assert c.socket_for(INFO) == str(tmp_path / "org.qemu.vm1.sock")
        row = c.collect(GuestSubject(INFO))
        assert row["mem_available"] == 1000000 and row["swap_usage"] == 100000
        assert "guest-sync-delimited" in agent.commands
        c.forget(INFO.uuid)
    finally:
        server.close()


def test_socket_used_when_the_hypervisor_has_no_agent(tmp_path: Path) -> None:
    agent = FakeGuestAgent({"/proc/meminfo": MEMINFO, "/proc/vmstat": VMSTAT})
    server = SocketServer(tmp_path / "vm1.agent", agent)
    try:
        c = collector(AgentHypervisor(None), socket_path=str(tmp_path))
        assert c.collect(GuestSubject(INFO))["mem_unused"] == 200000
    finally:
        server.close()


def test_no_agent_at_all(tmp_path: Path) -> None:
    c = collector(AgentHypervisor(None), socket_path=str(tmp_path))
    with pytest.raises(CollectionError, match="not supported"):
        c.collect(GuestSubject(INFO))
    c = collector(None, socket_path=str(tmp_path))
    with pytest.raises(CollectionError, match="does not exist"):
        c.collect(GuestSubject(INFO))


def test_bad_template_falls_back_to_name_agent(tmp_path: Path) -> None:
    c = collector(None, socket_path=str(tmp_path), socket_name_template="%(uuid)s.sock")
    assert c.socket_for(INFO) == str(tmp_path / "vm1.agent")


def test_libvirt_test_driver_has_no_agent(iface_factory, tmp_path: Path) -> None:
    pytest.importorskip("libvirt")
    h = iface_factory("test:///default")
    g = h.list_guests()[0]
    c = GuestQemuAgent(CollectorContext(hypervisor=h), {"socket_path": str(tmp_path)})
    with pytest.raises(CollectionError, match="qemuAgentCommand"):
        c.collect(GuestSubject(g))
