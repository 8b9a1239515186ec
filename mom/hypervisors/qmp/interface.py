"""QmpHypervisor: MOM's hypervisor interface straight over QEMU's QMP sockets.

Configuration: ``hypervisor-interface: qmp`` and ``qmp-socket-glob`` (the
sockets of the guests, e.g. Proxmox's ``/var/run/qemu-server/*.qmp``). Needs
qemu.qmp (``pip install 'mom-kvm[qmp]'``). One QMP connection per socket
(:mod:`.connection`, each with its own run state), all on one asyncio loop in
a thread of the interface (:mod:`.loop`); the mapping of QEMU's answers is in
:mod:`.stats`.

How it talks to QEMU:

- Discovery (:meth:`list_guests`): the glob is read; sockets that appeared get
  a connection, sockets that vanished lose theirs, connections that broke are
  made again (after a back-off while the socket refuses, e.g. left behind by a
  killed QEMU). The guests are the sockets with a live connection; identity
  and devices are read once per connection.
- Collection (``bulk``): one :meth:`collect_all` call runs every guest's
  queries at once on the loop, each guest under its own deadline, so a QEMU
  that hangs costs only its own guest (its connection is dropped and made
  again later). Per guest and tick, pipelined: ``qom-get guest-stats`` of the
  balloon (memory), ``query-balloon`` (balloon), ``query-memory-devices``
  (virtio_mem, only for a guest with a virtio-mem device).
- Control: ``balloon`` (bytes) for balloon targets; ``qom-set`` of the
  virtio-mem device's ``requested-size`` (bytes; a size off its block or
  outside [0, its region] is refused, as by the other interfaces); KSM through sysfs (the base class). CPU and IO
  tuning are libvirt's (cgroups and block throttling groups): not supported.
"""

from __future__ import annotations

import asyncio
import glob
import logging
import time
from collections.abc import Callable, Coroutine, Iterable
from typing import Any, TypeVar

from mom.core.host_paths import SYS_ROOT
from mom.hypervisors.base import (
    Capability,
    GuestData,
    GuestGone,
    GuestInfo,
    HypervisorError,
    HypervisorInterface,
    HypervisorUnavailable,
    NotSupported,
    check_virtio_mem_size,
)
from mom.hypervisors.qmp import stats
from mom.hypervisors.qmp.connection import QmpConnection, QmpHung, QmpLost
from mom.hypervisors.qmp.loop import LoopClosed, LoopThread
from mom.hypervisors.runstate import RunState
from mom.hypervisors.settings import QmpSettings

log = logging.getLogger("mom.qmp")
# qemu.qmp logs every failed greeting and lost connection as an error with a traceback; the
# interface reports each outage itself, once (see QmpHypervisor._report).
logging.getLogger("qemu.qmp").setLevel(logging.CRITICAL)
T = TypeVar("T")


class QmpHypervisor(HypervisorInterface):
    """The QMP hypervisor interface (see the module documentation)."""

    capabilities = frozenset({Capability.BULK_STATS})
    settings_type = QmpSettings

    def __init__(self, socket_glob: str, *, timeout: float = 5.0, stats_period: float | None = None,
                 sys_root: str = SYS_ROOT, retry_min: float = 1.0, retry_max: float = 30.0,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        """socket_glob: the guests' QMP sockets. timeout: the deadline of one QMP call,
        of one connection attempt and of one guest's collection (s). stats_period:
        the balloon statistics polling interval set on each guest (s; None: left
        alone). retry_min/retry_max: back-off bounds between connection attempts
        to a socket that refuses (s). Nothing is started here: the loop starts on
        the first call (or :meth:`start`)."""
        super().__init__(sys_root=sys_root)
        self.socket_glob = socket_glob
        self.timeout = timeout
        self.stats_period = None if stats_period is None else max(1, round(stats_period))
        self.retry_min, self.retry_max = retry_min, retry_max
        self._now = monotonic
        self._loop = LoopThread("mom-qmp")
        self._conns: dict[str, QmpConnection] = {}      # socket path -> its connection (loop thread only)
        self._by_uuid: dict[str, QmpConnection] = {}    # the last discovery's guests
        self._outages: dict[str, str] = {}              # socket path -> the outage logged for it
        self._none_reported = False                     # the glob matching nothing was logged

    @classmethod
    def from_settings(cls, settings: QmpSettings, clock: Any = None) -> QmpHypervisor:
        return cls(settings.socket_glob, timeout=settings.timeout, stats_period=settings.stats_period,
                   sys_root=settings.sys_root)

    # -- lifecycle ----------------------------------------------------------------------
    def start(self) -> None:
        """Start the loop's thread (the first call does it otherwise)."""
        try:
            self._loop.start()
        except LoopClosed:
            raise HypervisorUnavailable("qmp: the interface is closed") from None

    def close(self) -> None:
        """Close every connection and stop the loop; later calls raise HypervisorUnavailable."""
        self._loop.close(self._close_all(), timeout=self.timeout + 1)

    async def _close_all(self) -> None:
        conns, self._conns = list(self._conns.values()), {}
        await asyncio.gather(*(c.close() for c in conns), return_exceptions=True)

    def _run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run a coroutine on the loop from a pool thread. The coroutines bound their
        own QMP calls; the wait here is a backstop above those deadlines."""
        try:
            return self._loop.run(coro, (timeout or 2 * self.timeout) + 1)
        except LoopClosed:
            raise HypervisorUnavailable("qmp: the interface is closed") from None
        except TimeoutError as e:
            raise HypervisorError(f"qmp: {e}") from None

    @property
    def connections(self) -> dict[str, QmpConnection]:
        """Socket path -> connection (a copy; for status and tests)."""
        return dict(list(self._conns.items()))

    def run_states(self) -> dict[str, RunState]:
        """Socket path -> its connection's run state (for status and tests)."""
        return {path: conn.state for path, conn in list(self._conns.items())}

    def calls(self) -> int:
        """QMP commands sent so far over every connection (the benchmark's count)."""
        return sum(c.calls for c in list(self._conns.values()))

    # -- discovery ----------------------------------------------------------------------
    def list_guests(self) -> list[GuestInfo]:
        return self._run(self._discover())

    async def _discover(self) -> list[GuestInfo]:
        paths = sorted(glob.glob(self.socket_glob))
        if not paths and not self._none_reported:
            log.warning("qmp: no socket matches %s (yet); guests are picked up when their sockets appear",
                        self.socket_glob)
        self._none_reported = not paths
        present = set(paths)
        for path in [p for p in self._conns if p not in present]:
            conn = self._conns.pop(path)
            self._outages.pop(path, None)
            if conn.state is RunState.CONNECTED:
                log.info("qmp: guest %s: its socket %s is gone", conn.name, path)
            await conn.close()
        for conn in self._conns.values():
            await conn.check()  # a QEMU that exited since: reconnected below, at once
        for path in paths:
            if path not in self._conns:
                self._conns[path] = QmpConnection(path, timeout=self.timeout, stats_period=self.stats_period,
                                                  retry_min=self.retry_min, retry_max=self.retry_max,
                                                  monotonic=self._now)
        due = [c for c in self._conns.values() if c.due()]
        await asyncio.gather(*(c.connect() for c in due))
        for conn in due:
            self._report(conn)
        guests: list[GuestInfo] = []
        by_uuid: dict[str, QmpConnection] = {}
        for path in paths:
            conn = self._conns[path]
            ident = conn.identity
            if conn.state is not RunState.CONNECTED or ident is None:
                continue
            other = by_uuid.get(ident.uuid)
            if other is not None:
                self._outage(conn, f"the guest has the UUID {ident.uuid} of {other.path}'s guest; left out")
                continue
            by_uuid[ident.uuid] = conn
            guests.append(GuestInfo(uuid=ident.uuid, name=ident.name, pid=ident.pid))
        self._by_uuid = by_uuid
        return guests

    def _report(self, conn: QmpConnection) -> None:
        """One warning when a socket's connection fails or breaks (again when the
        reason changes), one line when it is back."""
        if conn.state is RunState.CONNECTED:
            if self._outages.pop(conn.path, None) is not None or conn.connections > 1:
                log.info("qmp: guest %s (%s) connected again, pid %s", conn.name, conn.path,
                         conn.identity.pid if conn.identity else None)
            for problem in conn.devices.problems:
                log.warning("qmp: guest %s: %s", conn.name, problem)
        elif conn.outage:
            self._outage(conn, conn.outage)

    def _outage(self, conn: QmpConnection, message: str) -> None:
        if self._outages.get(conn.path) == message:
            return
        self._outages[conn.path] = message
        log.warning("qmp: %s (guest %s): %s", conn.path, conn.name, message)

    def _conn(self, guest: GuestInfo) -> QmpConnection:
        conn = self._by_uuid.get(guest.uuid)
        if conn is None:
            raise GuestGone(f"guest {guest.name}: no QMP socket")
        return conn

    # -- collection ---------------------------------------------------------------------
    def collect_all(self, guests: Iterable[GuestInfo], sections: Iterable[str]) -> dict[str, GuestData]:
        return self._run(self._collect(list(guests), set(sections)))

    async def _collect(self, guests: list[GuestInfo], sections: set[str]) -> dict[str, GuestData]:
        known = [(g, self._by_uuid[g.uuid]) for g in guests if g.uuid in self._by_uuid]
        answers = await asyncio.gather(*(self._guest(g, c, sections) for g, c in known), return_exceptions=True)
        result: dict[str, GuestData] = {}
        for (guest, conn), answer in zip(known, answers, strict=True):
            if isinstance(answer, GuestData):
                result[guest.uuid] = answer
            elif isinstance(answer, (QmpLost, QmpHung)):
                self._report(conn)  # left out: discovery connects again
            elif isinstance(answer, TimeoutError):  # the guest's own deadline (a backstop)
                await conn.drop(f"QEMU did not answer within {self.timeout:g} s")
                self._report(conn)
            elif isinstance(answer, GuestGone):
                continue
            elif isinstance(answer, BaseException):
                raise answer
        return result

    async def _guest(self, guest: GuestInfo, conn: QmpConnection, sections: set[str]) -> GuestData:
        """One guest's sections, queried together (QMP pipelines them) under its deadline."""
        getters = {"memory": self._memory, "balloon": self._balloon, "virtio_mem": self._virtio_mem}
        wanted = [s for s in getters if s in sections]
        others = sorted(sections - set(getters))
        data = GuestData()
        answers = await asyncio.wait_for(
            asyncio.gather(*(getters[s](guest, conn) for s in wanted), return_exceptions=True), self.timeout + 0.5)
        for section, answer in zip(wanted, answers, strict=True):
            if isinstance(answer, (QmpLost, QmpHung)):
                raise answer
            if section == "virtio_mem" and isinstance(answer, NotSupported):
                continue  # no device: the section stays None (GuestData.virtio_mem), not an error
            if isinstance(answer, HypervisorError):
                data.errors[section] = str(answer)
                if isinstance(answer, NotSupported):
                    data.unsupported.add(section)
            elif isinstance(answer, BaseException):
                raise answer
            else:
                setattr(data, section, answer)
        for section in others:
            data.errors[section] = f"guest {guest.name}: {section} is not supported by the qmp interface"
            data.unsupported.add(section)
        return data

    async def _memory(self, guest: GuestInfo, conn: QmpConnection) -> dict[str, Any]:
        balloon = self._balloon_path(guest, conn)
        raw = await conn.execute("qom-get", {"path": balloon, "property": "guest-stats"})
        section = stats.memory_section(raw if isinstance(raw, dict) else {})
        if section is None:
            raise HypervisorError(f"guest {guest.name}: {stats.NO_BALLOON_STATS}")
        return section

    async def _balloon(self, guest: GuestInfo, conn: QmpConnection) -> dict[str, Any]:
        self._balloon_path(guest, conn)
        answer = await conn.execute("query-balloon")
        actual = answer.get("actual") if isinstance(answer, dict) else None
        if not isinstance(actual, int):
            raise HypervisorError(f"guest {guest.name}: query-balloon gave no actual size")
        devices = conn.devices
        return stats.balloon_section(actual, devices.base_memory or actual, devices.free_page_reporting)

    async def _virtio_mem(self, guest: GuestInfo, conn: QmpConnection) -> dict[str, Any]:
        if conn.devices.virtio_mem is None:
            raise NotSupported(f"guest {guest.name}: no virtio-mem device")
        entry = stats.virtio_mem_entry(await conn.execute("query-memory-devices"))
        if entry is None:
            raise NotSupported(f"guest {guest.name}: no virtio-mem device")
        return stats.virtio_mem_section(entry)

    @staticmethod
    def _balloon_path(guest: GuestInfo, conn: QmpConnection) -> str:
        if conn.devices.balloon is None:
            raise NotSupported(f"guest {guest.name}: no virtio-balloon device")
        return conn.devices.balloon

    # Per-guest getters (the base class's contract; used by tools and tests).
    def _one(self, guest: GuestInfo, getter: Callable[[GuestInfo, QmpConnection], Coroutine[Any, Any, T]]) -> T:
        conn = self._conn(guest)

        async def call() -> T:
            try:
                return await getter(guest, conn)
            except (QmpLost, QmpHung):
                self._report(conn)
                raise

        return self._run(call())

    def guest_memory_stats(self, guest: GuestInfo) -> dict[str, Any]:
        return self._one(guest, self._memory)

    def guest_balloon_info(self, guest: GuestInfo) -> dict[str, Any]:
        return self._one(guest, self._balloon)

    def guest_virtio_mem(self, guest: GuestInfo) -> dict[str, Any]:
        """The "virtio_mem" section: virtio_mem_size (plugged), virtio_mem_requested,
        virtio_mem_block, virtio_mem_max (the region), KiB. NotSupported without a device."""
        return self._one(guest, self._virtio_mem)

    # -- control ------------------------------------------------------------------------
    def set_balloon_target(self, guest: GuestInfo, target_kib: int) -> None:
        async def balloon(guest: GuestInfo, conn: QmpConnection) -> None:
            self._balloon_path(guest, conn)
            await conn.execute("balloon", {"value": int(target_kib) * stats.KIB})

        self._one(guest, balloon)

    def set_virtio_mem_requested(self, guest: GuestInfo, size_kib: int) -> None:
        """Ask the guest's virtio-mem device for ``size_kib`` plugged: its
        ``requested-size``. A size off the block or outside [0, the region] is
        refused with one line (HypervisorError), as QEMU would; the VirtioMem
        controller rounds and clamps."""
        async def request(guest: GuestInfo, conn: QmpConnection) -> None:
            dev = conn.devices
            if dev.virtio_mem is None:
                raise NotSupported(f"guest {guest.name}: no virtio-mem device")
            check_virtio_mem_size(guest.name, size_kib, dev.virtio_mem_block // stats.KIB,
                                  dev.virtio_mem_max // stats.KIB)
            await conn.execute("qom-set", {"path": dev.virtio_mem, "property": "requested-size",
                                           "value": int(size_kib) * stats.KIB})

        self._one(guest, request)
