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

from mom.core.faults import FaultKey, FaultLog, OncePerKind
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
    record_section_error,
)
from mom.hypervisors.qmp import stats
from mom.hypervisors.qmp.connection import QmpConnection, QmpHung, QmpLost
from mom.hypervisors.qmp.loop import LoopClosed, LoopThread
from mom.hypervisors.runstate import RunState
from mom.hypervisors.settings import QmpSettings

log = logging.getLogger("mom.qmp")
T = TypeVar("T")
# Each guest section's QMP command (named in the section's error when QEMU's answer cannot be read).
SECTION_COMMANDS = {"memory": "qom-get guest-stats", "balloon": "query-balloon",
                    "virtio_mem": "query-memory-devices"}
NO_SOCKETS = FaultKey("hypervisor", "qmp-socket-glob")


def outage_key(path: str) -> FaultKey:
    """The fault of one socket's connection (rendered "guest PATH qmp")."""
    return FaultKey("hypervisor", "qmp", path)


def quiet_qemu_qmp() -> None:
    """qemu.qmp logs every failed greeting and lost connection as an error with a
    traceback; the interface reports each outage itself, once. Silenced unless
    momd logs at debug verbosity (then its lines help) or someone set its level."""
    qemu_log = logging.getLogger("qemu.qmp")
    if qemu_log.level == logging.NOTSET and not log.isEnabledFor(logging.DEBUG):
        qemu_log.setLevel(logging.CRITICAL)


class QmpHypervisor(HypervisorInterface):
    """The QMP hypervisor interface (see the module documentation)."""

    capabilities = frozenset({Capability.BULK_STATS})
    settings_type = QmpSettings

    def __init__(self, socket_glob: str, *, timeout: float = 5.0, stats_period: float | None = None,
                 sys_root: str = SYS_ROOT, retry_min: float = 1.0, retry_max: float = 30.0,
                 monotonic: Callable[[], float] = time.monotonic, clock: Callable[[], float] | None = None,
                 backstop: float | None = None) -> None:
        """socket_glob: the guests' QMP sockets. timeout: the deadline of one QMP call,
        of one connection attempt and of one guest's collection (s). backstop: how
        long a caller waits for a whole discovery or collection at most (s; default
        2 * timeout + 1), after which it is cancelled. clock: the daemon's, for the
        times of the outages kept (FaultLog); monotonic: for the back-off. stats_period:
        the balloon statistics polling interval set on each guest (s; None: left
        alone). retry_min/retry_max: back-off bounds between connection attempts
        to a socket that refuses (s). Nothing is started here: the loop starts on
        the first call (or :meth:`start`)."""
        super().__init__(sys_root=sys_root)
        self.socket_glob = socket_glob
        self.timeout = timeout
        self.stats_period = None if stats_period is None else max(1, round(stats_period))
        self.retry_min, self.retry_max = retry_min, retry_max
        self.backstop = 2 * timeout + 1 if backstop is None else backstop
        self._now = monotonic
        self._loop = LoopThread("mom-qmp")
        self._conns: dict[str, QmpConnection] = {}      # socket path -> its connection (loop thread only)
        self._by_uuid: dict[str, QmpConnection] = {}    # the last discovery's guests
        self.faults = FaultLog(log, clock or time.time)  # the sockets' outages, each logged once
        self._bad_answers = OncePerKind(log)             # answers that could not be read: a traceback once
        self._started = False

    @classmethod
    def from_settings(cls, settings: QmpSettings, clock: Any = None) -> QmpHypervisor:
        return cls(settings.socket_glob, timeout=settings.timeout, stats_period=settings.stats_period,
                   sys_root=settings.sys_root, clock=clock.time if clock is not None else None)

    # -- lifecycle ----------------------------------------------------------------------
    def start(self) -> None:
        """Start the loop's thread (the first call does it otherwise). Raises
        HypervisorUnavailable after close()."""
        try:
            self._loop.start()
        except LoopClosed:
            raise HypervisorUnavailable("qmp: the interface is closed") from None
        if not self._started:  # on first use: momd's logging is set up by then
            self._started = True
            quiet_qemu_qmp()

    def close(self) -> None:
        """Cancel the calls under way (their callers get HypervisorUnavailable), close
        every connection and stop the loop; later calls raise HypervisorUnavailable.
        Raises nothing."""
        self._loop.close(self._close_all(), timeout=self.timeout + 1)

    async def _close_all(self) -> None:
        conns, self._conns = list(self._conns.values()), {}
        await asyncio.gather(*(c.close() for c in conns), return_exceptions=True)

    def _run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run a coroutine on the loop from a pool thread. The coroutines bound their
        own QMP calls; the wait here is a backstop above those deadlines. Raises
        HypervisorUnavailable (closed), HypervisorError (the backstop expired)."""
        try:
            self.start()
        except HypervisorUnavailable:
            coro.close()
            raise
        try:
            return self._loop.run(coro, timeout or self.backstop)
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
        """The guests: the sockets with a live connection. Raises HypervisorError when
        the backstop expired (the discovery is cancelled; the next one goes on),
        HypervisorUnavailable after close()."""
        return self._run(self._discover())

    async def _discover(self) -> list[GuestInfo]:
        paths = sorted(glob.glob(self.socket_glob))
        if paths:
            self.faults.clear(NO_SOCKETS)
        else:
            self.faults.report(NO_SOCKETS, f"no socket matches {self.socket_glob} (yet); "
                                           f"guests are picked up when their sockets appear")
        present = set(paths)
        gone = [self._conns.pop(p) for p in [p for p in self._conns if p not in present]]
        for conn in gone:
            self.faults.forget_target(conn.path)
            if conn.state is RunState.CONNECTED:
                log.info("qmp: guest %s: its socket %s is gone", conn.name, conn.path)
        for path in paths:
            if path not in self._conns:
                self._conns[path] = QmpConnection(path, timeout=self.timeout, stats_period=self.stats_period,
                                                  retry_min=self.retry_min, retry_max=self.retry_max,
                                                  monotonic=self._now)
        # This discovery's connections (close() may empty self._conns while it waits).
        conns = [self._conns[p] for p in paths]
        # All at once: one slow QEMU (closing, checking or connecting) delays none of the others.
        await asyncio.gather(*(c.close() for c in gone), *(self._refresh(c) for c in conns))
        guests: list[GuestInfo] = []
        by_uuid: dict[str, QmpConnection] = {}
        for conn in conns:
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

    async def _refresh(self, conn: QmpConnection) -> None:
        await conn.check()  # a QEMU that exited since: reconnected at once
        if conn.due():
            await conn.connect()
            self._report(conn)

    def _report(self, conn: QmpConnection) -> None:
        """One warning when a socket's connection fails or breaks (again when the
        reason changes); when it is back, "recovered" and which QEMU it is now."""
        key = outage_key(conn.path)
        if conn.state is RunState.CONNECTED:
            outage = str(key) in self.faults.active()
            self.faults.clear(key)  # "guest PATH qmp: recovered" if its outage was logged
            if outage or conn.connections > 1:  # which guest and QEMU it is now (it may have been restarted)
                log.info("qmp: guest %s (%s) connected again, pid %s", conn.name, conn.path,
                         conn.identity.pid if conn.identity else None)
            for problem in conn.devices.problems:
                log.warning("qmp: guest %s: %s", conn.name, problem)
        elif conn.outage:
            self._outage(conn, conn.outage)

    def _outage(self, conn: QmpConnection, message: str) -> None:
        self.faults.report(outage_key(conn.path), f"{message} (guest {conn.name})")

    def _conn(self, guest: GuestInfo) -> QmpConnection:
        conn = self._by_uuid.get(guest.uuid)
        if conn is None:
            raise GuestGone(f"guest {guest.name}: no QMP socket")
        return conn

    # -- collection ---------------------------------------------------------------------
    def collect_all(self, guests: Iterable[GuestInfo], sections: Iterable[str]) -> dict[str, GuestData]:
        """{uuid: GuestData} of the guests whose QEMU answered; a failing section (an
        error of QEMU, an answer that cannot be read, a device the guest lacks) is in
        that guest's errors only. Raises HypervisorError when the backstop expired,
        HypervisorUnavailable after close()."""
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
            elif isinstance(answer, Exception):  # a bug met on this guest's answers: its sections fail, not the tick
                why = self._unexpected(conn, "collection", answer)
                result[guest.uuid] = GuestData(errors=dict.fromkeys(sorted(sections), f"guest {guest.name}: {why}"))
            elif isinstance(answer, BaseException):
                raise answer
        return result

    def _unexpected(self, conn: QmpConnection, what: str, e: Exception) -> str:
        """The one line of an unexpected failure (constant, so the engine logs it once);
        its traceback is logged once per socket, part and kind, at debug verbosity."""
        if self._bad_answers.due((conn.path, what, type(e).__name__)) is not None:
            log.debug("qmp: %s: %s failed", conn.path, what, exc_info=e)
        return f"{what}: QEMU's answer cannot be read ({type(e).__name__}: {e})"

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
            if isinstance(answer, HypervisorError):  # NotSupported (no virtio-mem device): normal
                record_section_error(data, section, answer)
            elif isinstance(answer, Exception):  # a malformed answer: this guest's section fails, not the tick
                why = self._unexpected(conn, SECTION_COMMANDS[section], answer)
                data.errors[section] = f"guest {guest.name}: {why}"
            elif isinstance(answer, BaseException):
                raise answer
            else:
                setattr(data, section, answer)
        for section in others:
            record_section_error(data, section,
                                 NotSupported(f"guest {guest.name}: {section} is not supported by the qmp interface"))
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
    def _one(self, guest: GuestInfo, getter: Callable[[GuestInfo, QmpConnection], Coroutine[Any, Any, T]],
             what: str) -> T:
        """One guest's call (``what``: its QMP command, for the error). Raises GuestGone
        (no connection: QmpLost), HypervisorError (QEMU refused, did not answer,
        gave an answer that cannot be read; the backstop), NotSupported (no such
        device), HypervisorUnavailable after close()."""
        conn = self._conn(guest)

        async def call() -> T:
            try:
                return await getter(guest, conn)
            except (QmpLost, QmpHung):
                self._report(conn)
                raise
            except HypervisorError:
                raise
            except Exception as e:  # noqa: BLE001 - a malformed answer is this call's error, one line
                raise HypervisorError(f"guest {guest.name}: {self._unexpected(conn, what, e)}") from None

        return self._run(call())

    def guest_memory_stats(self, guest: GuestInfo) -> dict[str, Any]:
        return self._one(guest, self._memory, SECTION_COMMANDS["memory"])

    def guest_balloon_info(self, guest: GuestInfo) -> dict[str, Any]:
        return self._one(guest, self._balloon, SECTION_COMMANDS["balloon"])

    def guest_virtio_mem(self, guest: GuestInfo) -> dict[str, Any]:
        """The "virtio_mem" section: virtio_mem_size (plugged), virtio_mem_requested,
        virtio_mem_block, virtio_mem_max (the region), KiB. NotSupported without a device."""
        return self._one(guest, self._virtio_mem, SECTION_COMMANDS["virtio_mem"])

    # -- control ------------------------------------------------------------------------
    def set_balloon_target(self, guest: GuestInfo, target_kib: int) -> None:
        """Send ``balloon`` with the target in bytes. Raises GuestGone (no connection),
        NotSupported (no balloon device), HypervisorError (QEMU refused or did not
        answer; the backstop), HypervisorUnavailable after close()."""
        async def balloon(guest: GuestInfo, conn: QmpConnection) -> None:
            self._balloon_path(guest, conn)
            await conn.execute("balloon", {"value": int(target_kib) * stats.KIB})

        self._one(guest, balloon, "balloon")

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

        self._one(guest, request, "qom-set requested-size")
