"""One QEMU's QMP socket: connecting, identity, devices, calls with deadlines, loss.

Everything here runs on the interface's event loop (:mod:`.loop`), so a
connection needs no lock. Each connection has its own
:class:`~mom.hypervisors.runstate.RunStateMachine`; a QEMU that goes away (EOF,
a refused socket left behind by a killed QEMU) or stops answering (a call
misses its deadline) moves it to DISCONNECTED, and the interface's discovery
connects again after a back-off (retry_min doubling up to retry_max; the first
attempt after a loss is at once). A new connection reads everything again:
the QEMU behind the socket may have been restarted.

On connecting, in one pipelined burst: ``query-name``, ``query-uuid``,
``query-memory-size-summary`` (the guest's base memory, balloon_max),
``qom-list`` of /machine/peripheral and /machine/peripheral-anon (the balloon
and virtio-mem devices) and ``query-memory-devices`` (the virtio-mem device's
block and region sizes); then the balloon's ``free-page-reporting`` property
and its ``guest-stats-polling-interval`` (set to the statistics period). The
QEMU's pid is the socket peer's (SO_PEERCRED): QEMU has no ``query-pid``.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import time
import uuid as uuidlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qemu.qmp import ExecuteError, QMPClient, QMPError, Runstate

from mom.hypervisors.base import GuestGone, HypervisorError
from mom.hypervisors.runstate import RunState, RunStateMachine

# A guest started without -uuid answers query-uuid with this; it then gets one made from its socket path.
NULL_UUID = "00000000-0000-0000-0000-000000000000"
SOCKET_UUIDS = uuidlib.UUID("6f1d4c1e-2b52-4b8e-9a57-7a3c5b1f0e64")
PERIPHERALS = ("/machine/peripheral", "/machine/peripheral-anon")


class QmpLost(GuestGone):
    """The connection to this QEMU is gone (it exited, or was restarted): the guest
    is left out until discovery connects again."""


class QmpHung(HypervisorError):
    """This QEMU did not answer within the deadline; its connection is dropped."""


class QmpCommandError(HypervisorError):
    """QEMU answered a command with an error (its class and description)."""

    def __init__(self, message: str, error_class: str) -> None:
        super().__init__(message)
        self.error_class = error_class


@dataclass
class Identity:
    """Who the guest behind a socket is."""

    name: str
    uuid: str
    pid: int | None


@dataclass
class Devices:
    """What the guest has, read once per connection (device properties do not change)."""

    base_memory: int = 0                     # bytes: the RAM QEMU started with (balloon_max)
    balloon: str | None = None               # QOM path of the virtio-balloon device
    free_page_reporting: bool | None = None  # the balloon's free-page-reporting property
    virtio_mem: str | None = None            # QOM path of the (first) virtio-mem device
    virtio_mem_block: int = 0                # bytes
    virtio_mem_max: int = 0                  # bytes: the memory backend's size
    problems: list[str] = field(default_factory=list)  # what could not be read (for the log)


def peer_pid(sock: socket.socket) -> int | None:
    """The pid of the process at the other end of a unix socket (SO_PEERCRED)."""
    try:
        raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    except OSError:
        return None
    pid = struct.unpack("3i", raw)[0]
    return pid if pid > 0 else None


def socket_uuid(path: str) -> str:
    """A stable UUID for a guest started without -uuid, from its socket's path."""
    return str(uuidlib.uuid5(SOCKET_UUIDS, str(Path(path).resolve())))


class QmpConnection:
    """The QMP connection to one socket (one guest)."""

    def __init__(self, path: str, *, timeout: float, stats_period: int | None = None,
                 retry_min: float = 1.0, retry_max: float = 30.0,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.path = path
        self.timeout = timeout
        self.stats_period = stats_period
        self.retry_min, self.retry_max = retry_min, retry_max
        self._now = monotonic
        self.run = RunStateMachine(f"qmp {path}")
        self.client: QMPClient | None = None
        self.identity: Identity | None = None
        self.devices = Devices()
        self.calls = 0         # QMP commands sent, the handshake included (the benchmark reads it)
        self.connections = 0   # successful connections (more than 1: reconnected)
        self.outage: str | None = None  # why the last attempt or connection failed
        self._backoff = retry_min
        self._next_attempt = 0.0

    @property
    def state(self) -> RunState:
        return self.run.state

    @property
    def name(self) -> str:
        return self.identity.name if self.identity else Path(self.path).stem

    def due(self) -> bool:
        """Whether discovery should try to connect now."""
        return self.state in (RunState.IDLE, RunState.DISCONNECTED) and self._now() >= self._next_attempt

    # -- connecting -------------------------------------------------------------------
    async def connect(self) -> None:
        """Connect, negotiate and read identity and devices, all within the deadline.
        A failure leaves the connection DISCONNECTED with ``outage`` set; nothing is
        raised, except the cancellation of the attempt (the interface's backstop, or
        close()), which is raised again after the attempt was undone (socket closed,
        DISCONNECTED: the next discovery tries again). On a closed connection, nothing."""
        if self.state is RunState.CLOSED:  # close() ran while this attempt was scheduled
            return
        self.run.move(RunState.CONNECTING)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.setblocking(False)
        client = QMPClient(f"mom {Path(self.path).name}")
        try:
            await asyncio.wait_for(self._open(sock, client), self.timeout)
        except (TimeoutError, OSError, EOFError, QMPError, HypervisorError, ValueError, KeyError, TypeError) as e:
            why = f"no answer within {self.timeout:g} s" if isinstance(e, TimeoutError) else _reason(e)
            await self._undo(sock, client, f"cannot connect: {why}")
            return
        except BaseException:
            # Cancelled (or worse): left CONNECTING, due() would never be true again and
            # the guest never managed again; the socket would leak.
            await self._undo(sock, client, "cannot connect: the attempt was cancelled")
            raise
        if self.state is not RunState.CONNECTING:  # closed meanwhile
            await self._shut(client)
            return
        self.client = client
        self.connections += 1
        self.outage = None
        self._backoff = self.retry_min
        self.run.move(RunState.CONNECTED)

    async def _open(self, sock: socket.socket, client: QMPClient) -> None:
        await asyncio.get_running_loop().sock_connect(sock, self.path)
        pid = peer_pid(sock)
        await client.connect(sock)
        self.calls += 1  # qmp_capabilities
        name, uuid, summary, devices = await asyncio.gather(
            self._ask(client, "query-name", default={}), self._ask(client, "query-uuid", default={}),
            self._ask(client, "query-memory-size-summary", default={}), self._find_devices(client))
        guest_uuid = str(uuid.get("UUID") or NULL_UUID)
        if guest_uuid == NULL_UUID:
            guest_uuid = socket_uuid(self.path)
        self.identity = Identity(name=str(name.get("name") or Path(self.path).stem), uuid=guest_uuid, pid=pid)
        devices.base_memory = int(summary.get("base-memory", 0))
        self.devices = devices

    async def _find_devices(self, client: QMPClient) -> Devices:
        found = Devices()
        listed = await asyncio.gather(*(self._ask(client, "qom-list", {"path": p}, default=[]) for p in PERIPHERALS),
                                      self._ask(client, "query-memory-devices", default=[]))
        for parent, children in zip(PERIPHERALS, listed[:2], strict=True):
            for child in children if isinstance(children, list) else []:
                kind, name = str(child.get("type", "")), child.get("name")
                if kind.startswith("child<virtio-balloon") and found.balloon is None:
                    found.balloon = f"{parent}/{name}"
                elif kind.startswith("child<virtio-mem") and found.virtio_mem is None:
                    found.virtio_mem = f"{parent}/{name}"
        for dev in listed[2] if isinstance(listed[2], list) else []:
            data = dev.get("data") or {}
            if dev.get("type") == "virtio-mem":
                if data.get("id"):
                    found.virtio_mem = f"/machine/peripheral/{data['id']}"
                found.virtio_mem_block = int(data.get("block-size", 0))
                found.virtio_mem_max = int(data.get("max-size", 0))
                break
        if found.virtio_mem is not None and not found.virtio_mem_block:
            found.virtio_mem = None  # listed, but QEMU gave no sizes: not usable
        if found.balloon is not None:
            fpr = await self._ask(client, "qom-get", {"path": found.balloon, "property": "free-page-reporting"},
                                  default=None)
            found.free_page_reporting = fpr if isinstance(fpr, bool) else None
            if self.stats_period:
                try:
                    await self._exec(client, "qom-set", {"path": found.balloon,
                                                         "property": "guest-stats-polling-interval",
                                                         "value": int(self.stats_period)})
                except QmpCommandError as e:
                    found.problems.append(f"cannot set the balloon statistics period: {e}")
        return found

    async def _ask(self, client: QMPClient, cmd: str, args: dict[str, Any] | None = None,
                   default: Any = None) -> Any:
        """A handshake query: QEMU's refusal (an older QEMU, no such device) gives ``default``."""
        try:
            return await self._exec(client, cmd, args)
        except QmpCommandError:
            return default

    async def _exec(self, client: QMPClient, cmd: str, args: dict[str, Any] | None = None) -> Any:
        self.calls += 1
        try:
            return await client.execute(cmd, args)
        except ExecuteError as e:
            raise QmpCommandError(f"{cmd}: {e.error_class}: {e}", e.error_class) from None

    # -- calls --------------------------------------------------------------------------
    async def execute(self, cmd: str, args: dict[str, Any] | None = None) -> Any:
        """One command on the live connection, within the deadline. Raises QmpLost
        (no connection, or it broke), QmpHung (no answer: the connection is
        dropped), QmpCommandError (QEMU refused the command)."""
        client = self.client
        if self.state is not RunState.CONNECTED or client is None or client.runstate is not Runstate.RUNNING:
            if self.state is RunState.CONNECTED:
                await self.drop("the connection was closed")
            raise QmpLost(f"guest {self.name}: no QMP connection ({self.outage or self.state.value})")
        try:
            return await asyncio.wait_for(self._exec(client, cmd, args), self.timeout)
        except TimeoutError:
            message = f"QEMU did not answer within {self.timeout:g} s"
            await self.drop(message)
            raise QmpHung(f"guest {self.name}: {cmd}: {message}") from None
        except (QMPError, OSError, EOFError) as e:
            await self.drop(f"the connection broke ({_reason(e)})")
            raise QmpLost(f"guest {self.name}: {cmd}: the QMP connection broke") from None

    async def check(self) -> None:
        """Notice a connection qemu.qmp saw end (QEMU exited or was killed)."""
        client = self.client
        if self.state is RunState.CONNECTED and (client is None or client.runstate is not Runstate.RUNNING):
            await self.drop("QEMU closed the connection")

    async def drop(self, why: str) -> None:
        """Leave CONNECTED (the next discovery reconnects, at once the first time)."""
        if self.state is not RunState.CONNECTED:
            return
        client, self.client = self.client, None
        self._next_attempt = self._now()
        self._backoff = self.retry_min
        self.outage = why
        self.run.move(RunState.DISCONNECTED)
        await self._shut(client)

    async def _undo(self, sock: socket.socket, client: QMPClient, why: str) -> None:
        """A failed or cancelled attempt: DISCONNECTED first (whatever interrupts the
        rest), then the client shut and the socket closed."""
        if self.state is RunState.CONNECTING:
            self._lost(why)
        try:
            await self._shut(client)
        finally:
            sock.close()

    def _lost(self, why: str) -> None:
        """A failed attempt: DISCONNECTED, and the next attempt after the back-off."""
        self.outage = why
        self._next_attempt = self._now() + self._backoff
        self._backoff = min(self.retry_max, self._backoff * 2)
        self.run.move(RunState.DISCONNECTED)

    async def _shut(self, client: QMPClient | None) -> None:
        """Disconnect a client, quietly and within the deadline (a hung QEMU may not read)."""
        if client is None or client.runstate is Runstate.IDLE:
            return
        try:
            await asyncio.wait_for(client.disconnect(), self.timeout)
        except (TimeoutError, QMPError, OSError, EOFError):
            pass  # the reason it went away was reported already
        except Exception:  # noqa: BLE001 - qemu.qmp re-raises whatever ended its reader
            pass

    async def close(self) -> None:
        """Close for good (CLOSED; later calls raise QmpLost, a later connect() does
        nothing). Raises nothing: the client is shut within the deadline, quietly."""
        if self.state is RunState.CLOSED:
            return
        client, self.client = self.client, None
        self.run.move(RunState.CLOSED)
        await self._shut(client)


def _reason(e: BaseException) -> str:
    """A short constant reason (no addresses, no ids), so one outage is one fault."""
    if isinstance(e, OSError) and e.strerror:
        return e.strerror
    if isinstance(e, EOFError):
        return "QEMU closed the connection"
    cause = getattr(e, "exc", None)
    if isinstance(cause, BaseException) and cause is not e:
        return _reason(cause)
    return str(e) or type(e).__name__
