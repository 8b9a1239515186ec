"""A QMP server double: fake QEMUs answering the real QMP protocol on unix sockets.

Each :class:`FakeQemu` listens on its own socket and speaks QMP as QEMU does
(measured on QEMU 7.2, see the QMP interface's tests): the greeting, capability
negotiation (commands before ``qmp_capabilities`` are refused), ``execute`` with
the client's ``id`` echoed in ``return`` or ``error`` (class and desc). It
answers the commands MOM's ``qmp`` interface uses, with QEMU's answers and error
messages: query-name, query-uuid, query-memory-size-summary, query-balloon,
balloon, query-memory-devices, qom-list, qom-get and qom-set of the balloon's
guest-stats, guest-stats-polling-interval and free-page-reporting and of the
virtio-mem device's requested-size, size, block-size.

Faults on demand: :meth:`FakeQemu.hang` (read commands, answer none, as a QEMU
stuck in its main loop), :meth:`FakeQemu.kill` (connections and listener gone,
the socket file left behind as after SIGKILL) and :meth:`FakeQemu.start` again
on the same path (a restarted QEMU). All fake QEMUs of one :class:`QmpDouble`
run on one event loop in one thread; :meth:`QmpDouble.close` stops them all.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from collections.abc import AsyncIterator, Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

T = TypeVar("T")
MIB = 1024 * 1024
NULL_UUID = "00000000-0000-0000-0000-000000000000"


async def _messages(reader: asyncio.StreamReader) -> AsyncIterator[dict[str, Any]]:
    """The JSON objects of a QMP stream: like QEMU's parser, no newline needed between them."""
    decoder = json.JSONDecoder()
    buf = ""
    while True:
        chunk = await reader.read(65536)
        if not chunk:
            return
        buf += chunk.decode()
        while True:
            buf = buf.lstrip()
            if not buf:
                break
            try:
                msg, end = decoder.raw_decode(buf)
            except json.JSONDecodeError:
                break  # an incomplete object: wait for more
            buf = buf[end:]
            yield msg


class QmpErrorReply(Exception):
    def __init__(self, error_class: str, desc: str) -> None:
        super().__init__(desc)
        self.error_class, self.desc = error_class, desc


@dataclass
class GuestState:
    """What the fake guest reports; tests change it between ticks."""

    base_mib: int = 1024
    actual_mib: int = 1024              # the balloon's actual size
    used_mib: int = 200                 # what the guest's programs use
    cache_mib: int = 50
    balloon: bool = True
    free_page_reporting: bool = True
    virtio_mem: bool = False
    vmem_block_mib: int = 2
    vmem_max_mib: int = 1024
    vmem_requested_mib: int = 0
    newer_stats: bool = False           # stat-oom-kills and stat-alloc-stalls (newer QEMU and guests)
    oom_kills: int = 0
    alloc_stalls: int = 0
    polling_interval: int = 0
    # command -> the answer given instead of QEMU's (a malformed answer); the handshake's too
    answers: dict[str, Any] = field(default_factory=dict)


class FakeQemu:
    """One fake QEMU on one socket."""

    def __init__(self, double: QmpDouble, path: str, name: str | None, uuid: str | None, state: GuestState) -> None:
        self.double = double
        self.path = path
        self.name = name
        self.uuid = uuid
        self.state = state
        self.calls = 0              # commands executed (qmp_capabilities included)
        self.commands: list[str] = []
        self.connections = 0
        self.hung = False
        self._server: asyncio.AbstractServer | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    # -- control from the test thread ---------------------------------------------
    def start(self) -> FakeQemu:
        self.double.run(self._start())
        return self

    def kill(self) -> None:
        """As SIGKILL: listener and connections gone, the socket file left behind."""
        self.double.run(self._stop())

    def remove(self) -> None:
        """As a QEMU that exited cleanly: stopped and its socket file removed."""
        self.kill()
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass

    def hang(self, hung: bool = True) -> None:
        self.hung = hung

    @property
    def open_connections(self) -> int:
        """Client connections this QEMU still holds open (a client that leaks its socket keeps one)."""
        return len(self._writers)

    # -- the server ---------------------------------------------------------------------
    async def _start(self) -> None:
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
        self._server = await asyncio.start_unix_server(self._serve, path=self.path)

    async def _stop(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._writers):
            writer.close()
        self._writers.clear()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.add(writer)
        negotiated = False
        try:
            if self.hung:
                await reader.read()  # a stuck QEMU does not even greet
                return
            self._send(writer, {"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 7}, "package": ""},
                                        "capabilities": ["oob"]}})
            async for msg in _messages(reader):
                if self.hung:
                    continue
                reply: dict[str, Any] = {}
                if "id" in msg:
                    reply["id"] = msg["id"]
                cmd = msg.get("execute")
                self.calls += 1
                self.commands.append(str(cmd))
                try:
                    if cmd == "qmp_capabilities":
                        negotiated = True
                        result: Any = {}
                    elif not negotiated:
                        raise QmpErrorReply("CommandNotFound",
                                            "Expecting capabilities negotiation with 'qmp_capabilities'")
                    else:
                        result = self._execute(str(cmd), msg.get("arguments") or {})
                    reply["return"] = result
                except QmpErrorReply as e:
                    reply["error"] = {"class": e.error_class, "desc": e.desc}
                self._send(writer, reply)
        except (ConnectionError, OSError):
            return
        finally:
            self._writers.discard(writer)
            writer.close()

    @staticmethod
    def _send(writer: asyncio.StreamWriter, obj: dict[str, Any]) -> None:
        writer.write(json.dumps(obj).encode() + b"\r\n")

    # -- commands -----------------------------------------------------------------------
    def _execute(self, cmd: str, args: dict[str, Any]) -> Any:
        s = self.state
        if cmd in s.answers:
            return s.answers[cmd]
        if cmd == "query-name":
            return {"name": self.name} if self.name else {}
        if cmd == "query-uuid":
            return {"UUID": self.uuid or NULL_UUID}
        if cmd == "query-memory-size-summary":
            return {"base-memory": s.base_mib * MIB, "plugged-memory": self._plugged() * MIB}
        if cmd == "query-balloon":
            self._need_balloon()
            return {"actual": s.actual_mib * MIB}
        if cmd == "balloon":
            self._need_balloon()
            value = int(args["value"])
            s.actual_mib = max(1, min(s.base_mib, value // MIB))
            return {}
        if cmd == "query-memory-devices":
            if not s.virtio_mem:
                return []
            return [{"type": "virtio-mem", "data": {
                "memdev": "/objects/vmem0", "memaddr": 4294967296, "block-size": s.vmem_block_mib * MIB,
                "size": self._plugged() * MIB, "node": 0, "max-size": s.vmem_max_mib * MIB,
                "requested-size": s.vmem_requested_mib * MIB, "id": "vmem0dev"}}]
        if cmd == "qom-list":
            return self._qom_list(str(args.get("path")))
        if cmd == "qom-get":
            return self._qom_get(str(args.get("path")), str(args.get("property")))
        if cmd == "qom-set":
            self._qom_set(str(args.get("path")), str(args.get("property")), args.get("value"))
            return {}
        raise QmpErrorReply("CommandNotFound", f"The command {cmd} has not been found")

    def _need_balloon(self) -> None:
        if not self.state.balloon:
            raise QmpErrorReply("DeviceNotActive", "No balloon device has been activated")

    def _plugged(self) -> int:
        return self.state.vmem_requested_mib if self.state.virtio_mem else 0

    def _qom_list(self, path: str) -> list[dict[str, str]]:
        if path == "/machine/peripheral":
            out = [{"name": "type", "type": "string"}]
            if self.state.balloon:
                out.append({"name": "balloon0", "type": "child<virtio-balloon-pci>"})
            if self.state.virtio_mem:
                out.append({"name": "vmem0dev", "type": "child<virtio-mem-pci>"})
            return out
        if path == "/machine/peripheral-anon":
            return [{"name": "type", "type": "string"}]
        raise QmpErrorReply("DeviceNotFound", f"Device '{path}' not found")

    def _device(self, path: str) -> str:
        if path == "/machine/peripheral/balloon0" and self.state.balloon:
            return "balloon"
        if path == "/machine/peripheral/vmem0dev" and self.state.virtio_mem:
            return "vmem"
        raise QmpErrorReply("DeviceNotFound", f"Device '{path}' not found")

    def _qom_get(self, path: str, prop: str) -> Any:
        s, device = self.state, self._device(path)
        if device == "balloon":
            if prop == "free-page-reporting":
                return s.free_page_reporting
            if prop == "guest-stats-polling-interval":
                return s.polling_interval
            if prop == "guest-stats":
                return self._guest_stats()
        else:
            values = {"requested-size": s.vmem_requested_mib * MIB, "size": self._plugged() * MIB,
                      "block-size": s.vmem_block_mib * MIB}
            if prop in values:
                return values[prop]
        kind = "virtio-balloon-pci" if device == "balloon" else "virtio-mem-pci"
        raise QmpErrorReply("GenericError", f"Property '{kind}.{prop}' not found")

    def _qom_set(self, path: str, prop: str, value: Any) -> None:
        s, device = self.state, self._device(path)
        if device == "balloon" and prop == "guest-stats-polling-interval":
            s.polling_interval = int(value)
            return
        if device == "vmem" and prop == "requested-size":
            value = int(value)
            if value % (s.vmem_block_mib * MIB):
                raise QmpErrorReply("GenericError", f"'requested-size' has to be multiples of 'block-size' "
                                                    f"(0x{s.vmem_block_mib * MIB:x})")
            if value > s.vmem_max_mib * MIB:
                raise QmpErrorReply("GenericError", f"'requested-size' cannot exceed the memory backend size"
                                                    f"(0x{s.vmem_max_mib * MIB:x})")
            s.vmem_requested_mib = value // MIB
            return
        raise QmpErrorReply("GenericError", f"Property '{prop}' not found")

    def _guest_stats(self) -> dict[str, Any]:
        s = self.state
        if not s.polling_interval:
            return {"stats": dict.fromkeys(("stat-total-memory", "stat-free-memory"), -1), "last-update": 0}
        total = (s.actual_mib + self._plugged()) * MIB
        free = max(0, total - (s.used_mib + s.cache_mib) * MIB)
        stats = {"stat-swap-in": 0, "stat-swap-out": 0, "stat-major-faults": 3, "stat-minor-faults": 1000,
                 "stat-free-memory": free, "stat-total-memory": total,
                 "stat-available-memory": free + s.cache_mib * MIB,
                 "stat-disk-caches": s.cache_mib * MIB, "stat-htlb-pgalloc": 0, "stat-htlb-pgfail": 0}
        if s.newer_stats:
            stats.update({"stat-oom-kills": s.oom_kills, "stat-alloc-stalls": s.alloc_stalls})
        return {"stats": stats, "last-update": int(time.time())}


class QmpDouble:
    """Many fake QEMUs, on one event loop in one thread."""

    def __init__(self, directory: str) -> None:
        self.directory = directory
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="qmp-double", daemon=True)
        self._thread.start()
        self.qemus: list[FakeQemu] = []

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(10)

    def add(self, sock_name: str, *, name: str | None = None, uuid: str | None = None,
            state: GuestState | None = None, start: bool = True) -> FakeQemu:
        qemu = FakeQemu(self, os.path.join(self.directory, sock_name), name, uuid, state or GuestState())
        self.qemus.append(qemu)
        if start:
            qemu.start()
        return qemu

    def calls(self) -> int:
        return sum(q.calls for q in self.qemus)

    def close(self) -> None:
        for qemu in self.qemus:
            try:
                qemu.kill()
            except Exception:  # noqa: BLE001 - closing goes on
                pass
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)
        if not self._thread.is_alive():
            self.loop.close()


def main(argv: list[str]) -> int:
    """Serve COUNT fake QEMUs in DIR (sockets vmN.qmp) until stdin closes; prints "ready".
    SIGUSR1 makes vm0 stop answering (a hung QEMU).

    python -m tests.support.qmp_double DIR COUNT [--virtio-mem]   (the benchmark's server)"""
    import signal
    import sys
    import uuid as uuidlib

    directory, count = argv[0], int(argv[1])
    double = QmpDouble(directory)
    ns = uuidlib.UUID("9a4c8e1e-3a0b-4a43-8f0f-3b9d2f6f4a10")
    for i in range(count):
        double.add(f"vm{i}.qmp", name=f"vm{i}", uuid=str(uuidlib.uuid5(ns, f"vm{i}")),
                   state=GuestState(virtio_mem="--virtio-mem" in argv))
    signal.signal(signal.SIGUSR1, lambda signum, frame: double.qemus[0].hang())
    print("ready", flush=True)
    sys.stdin.read()
    double.close()
    return 0


if __name__ == "__main__":
    import sys

    raise SystemExit(main(sys.argv[1:]))
