"""LibvirtHypervisor: MOM's hypervisor interface over libvirt (libvirt-python).

Configuration: ``hypervisor-interface: libvirt`` and ``libvirt-hypervisor-uri``
('' = libvirt's default URI). Needs the ``libvirt`` extra (``pip install
'mom-kvm[libvirt]'``). The connection, its run state and back-off are in
:mod:`.connection`, the event loop and callbacks in :mod:`.events`, the
mapping of libvirt's statistics in :mod:`.stats`, the domain XML in
:mod:`.domain_xml`; this module holds the per-domain caches and the calls.

How it talks to libvirt, per tick and per guest:

- Discovery: one ``listAllDomains(ACTIVE)`` call; name and UUID are local
  accessors of the returned domain objects. The QEMU pid comes from libvirt's
  pid file (``/run/libvirt/qemu/NAME.pid`` for qemu:///system), checked
  against ``/proc/PID/cmdline`` holding the domain's UUID; no ``ps`` scan.
  When the connection delivers domain lifecycle events, a started or stopped
  domain makes the engine run discovery at once (see
  :meth:`set_change_listener`).
- Collection (``bulk``): one ``getAllDomainStats(STATE | BALLOON)`` call for
  all guests. When the driver leaves a domain's ``balloon.*`` statistics empty
  (libvirt's test driver does; so does a guest without a balloon device),
  that guest falls back to ``memoryStats()`` and/or ``info()``. balloon_min,
  the vCPU count, the oVirt vcpuLimit metadata and the disk list come from the
  domain XML, cached per domain and fetched again after a lifecycle,
  metadata or tunable event, or after ``xml_ttl`` seconds (with jitter, so a
  large host does not fetch every XML in the same tick). The balloon
  statistics period (the guest monitor interval) is set in :meth:`refresh`
  on each domain that lacks it on the current connection.
- Control: ``setMemory`` (KiB) for balloon targets; scheduler parameters
  ``vcpu_quota``/``vcpu_period``; ``setBlockIoTune`` per disk (the disk found
  and the limits checked by the one rule of :mod:`mom.core.disks`); KSM
  through sysfs under ``sys_root`` (the base class); the QEMU guest agent
  through ``qemuAgentCommand`` (:meth:`qemu_agent_command`, used by
  GuestQemuAgent).

Faults: see :mod:`.connection` for outages (ConnectionLost, one message per
outage, back-off). The daemon connects lazily (on the first call, after
``momd -d`` forked). A domain that disappears mid-tick is normal under churn:
it is left out quietly (GuestGone, which the engine logs at debug level), also
when a call fails with another error and the domain then turns out not to be
running (QEMU exited during the call). An error in one guest's section is
recorded in its GuestData and never spoils the other guests. A per-guest
problem the interface reports itself (the statistics period cannot be set) is
one warning per kind, naming how many guests it hit, not one per guest.
"""

from __future__ import annotations

import json
import logging
import operator
import os
import random
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import libvirt

from mom.core.faults import FaultKey, FaultLog, OncePerKind
from mom.hypervisors.base import (
    SECTIONS,
    Capability,
    GuestData,
    GuestGone,
    GuestInfo,
    HypervisorError,
    HypervisorInterface,
    NotSupported,
    checked_io_tunes,
    disk_for,
)
from mom.hypervisors.libvirt import events as events_module
from mom.hypervisors.libvirt import stats
from mom.hypervisors.libvirt.connection import GONE_CODES, ConnectionLost, LibvirtConnection, RunState, default_pid_dir
from mom.hypervisors.libvirt.domain_xml import DomainXml, parse_domain_xml
from mom.hypervisors.settings import LibvirtSettings

log = logging.getLogger("mom.libvirt")
# getAllDomainStats failing: logged once ("libvirt bulk statistics: ..."), and once when it works again.
BULK_STATS = FaultKey("libvirt", "bulk statistics")


def _disk_ident(disk: Any) -> tuple[str, str | None]:
    return disk.dev, disk.path


class LibvirtHypervisor(HypervisorInterface):
    """The libvirt hypervisor interface (see the module documentation)."""

    capabilities = frozenset({Capability.BULK_STATS, Capability.EVENTS, Capability.GUEST_AGENT})
    settings_type = LibvirtSettings

    def __init__(self, uri: str = "", *, sys_root: str = "/sys", proc_root: str = "/proc",
                 pid_dir: str | None = None, events: bool = True,
                 opener: Callable[[str | None], Any] | None = None,
                 retry_min: float = 1.0, retry_max: float = 30.0, xml_ttl: float = 60.0,
                 stats_period: float | None = None, connect_now: bool = True,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        """uri: libvirt URI ('' = the default). pid_dir: where NAME.pid files are
        (default: from the URI; none for remote and test URIs). events: use
        domain lifecycle events when the connection supports them. opener:
        replaces ``libvirt.open`` (the benchmark wraps the connection with it).
        retry_min/retry_max: back-off bounds between reconnection attempts (s).
        xml_ttl: how long a domain's parsed XML is reused (s). stats_period:
        the balloon statistics period set on every guest (s; None: leave it).
        connect_now: open the connection here rather than on the first call
        (the daemon connects lazily: it may fork after building the interface).
        monotonic: the time source of the back-off and the XML cache."""
        super().__init__(sys_root=sys_root)
        self.uri = uri
        self.proc_root = proc_root
        self._pid_dir_setting = pid_dir
        self.pid_dir = pid_dir
        self._events_wanted = events
        self.xml_ttl = xml_ttl
        self._now = monotonic
        handlers = events_module.Handlers(closed=self._on_close, lifecycle=self._on_lifecycle,
                                          changed=self._on_change)
        self.connection = LibvirtConnection(
            uri, opener=opener, retry_min=retry_min, retry_max=retry_max, monotonic=monotonic,
            prepare=lambda: self._events_wanted and events_module.EventLoop.ensure(),
            register=lambda conn, uri: events_module.register(conn, uri, handlers),
            attached=self._attached, release=events_module.release)
        self._lock = self.connection.lock  # the caches below belong to the current connection
        self._doms: dict[str, Any] = {}        # uuid -> virDomain of the current connection
        self._pids: dict[str, tuple[int, int | None]] = {}  # uuid -> (domain id, pid)
        self._xml: dict[str, tuple[float, DomainXml]] = {}  # uuid -> (expiry, parsed XML)
        self._stats_period = None if stats_period is None else max(1, round(stats_period))
        self._period_set: set[str] = set()   # uuids whose stats period is set on this connection
        self._listener: Callable[[], None] | None = None
        self._faults = FaultLog(stats.log, monotonic)  # the bulk call's fall-back, logged once until it clears
        self._period_kinds = OncePerKind(stats.log)  # libvirt error codes warned about when setting the period
        self.events_active = False
        if connect_now:
            try:
                self._ensure()
            except HypervisorError:
                pass  # logged once; retried on every call with back-off

    @classmethod
    def from_settings(cls, settings: LibvirtSettings, clock: Any = None) -> LibvirtHypervisor:
        """The daemon's interface: it connects on the first call (momd -d forks after this)."""
        return cls(settings.uri, sys_root=settings.sys_root, proc_root=settings.proc_root,
                   stats_period=settings.stats_period, connect_now=False)

    # -- the connection ---------------------------------------------------------------------
    @property
    def conn(self) -> Any:
        """The live libvirt connection, None while there is none."""
        return self.connection.conn

    @property
    def connections(self) -> int:
        """Successful opens so far (1 = the first connection; more = reconnections)."""
        return self.connection.connections

    @property
    def connected_uri(self) -> str:
        return self.connection.connected_uri

    @property
    def run_state(self) -> RunState:
        return self.connection.state

    def _ensure(self) -> Any:
        """The live connection, opening one when needed. Raises ConnectionLost."""
        return self.connection.ensure()

    def _attached(self, conn: Any, uri: str, ids: list[int] | None) -> None:
        """The connection changed (lock held): a new one (conn) or none (conn None).
        A new connection starts with empty caches: libvirtd may have restarted."""
        self._doms.clear()
        if conn is None:
            return
        self._period_set.clear()
        self._xml.clear()
        self.events_active = ids is not None
        if self._pid_dir_setting is None:
            self.pid_dir = default_pid_dir(uri)

    def _drop(self, conn: Any, why: str) -> str:
        return self.connection.drop(conn, why)

    def _error(self, e: libvirt.libvirtError, what: str, conn: Any) -> HypervisorError:
        return self.connection.error(e, what, conn)

    # -- events (called from libvirt's event thread) -----------------------------------------
    def _on_close(self, conn: Any, reason: int, opaque: Any) -> None:
        if reason == events_module.CLIENT_CLOSE:
            return
        self._drop(conn, f"connection closed (reason {reason})")

    def _on_lifecycle(self, conn: Any, dom: Any, event: int, detail: int, opaque: Any) -> None:
        try:
            uuid = dom.UUIDString()
        except libvirt.libvirtError:
            return
        with self._lock:
            self._xml.pop(uuid, None)
            if event in events_module.GONE_EVENTS:
                self._doms.pop(uuid, None)
                self._period_set.discard(uuid)
        if event in events_module.DISCOVERY_EVENTS and self._listener is not None:
            try:
                self._listener()
            except Exception:
                log.exception("change listener failed")

    def _on_change(self, conn: Any, dom: Any, *args: Any) -> None:
        try:
            uuid = dom.UUIDString()
        except libvirt.libvirtError:
            return
        with self._lock:
            self._xml.pop(uuid, None)

    def set_change_listener(self, listener: Callable[[], None] | None) -> bool:
        """Call ``listener`` (from the event thread) when a domain starts or stops.
        True: libvirt's events are used whenever the connection delivers them."""
        self._listener = listener
        return self._events_wanted

    def _dom(self, conn: Any, guest: GuestInfo) -> Any:
        dom = self._doms.get(guest.uuid)
        if dom is not None:
            return dom
        try:
            dom = conn.lookupByUUIDString(guest.uuid)
        except libvirt.libvirtError as e:
            raise self._error(e, f"guest {guest.name}", conn) from None
        self._doms[guest.uuid] = dom
        return dom

    # -- discovery ----------------------------------------------------------------------
    def list_guests(self) -> list[GuestInfo]:
        conn = self._ensure()
        try:
            doms = conn.listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE)
        except libvirt.libvirtError as e:
            raise self._error(e, "listing domains", conn) from None
        guests: list[GuestInfo] = []
        by_uuid: dict[str, Any] = {}
        for dom in doms:
            try:
                uuid, name, dom_id = dom.UUIDString(), dom.name(), dom.ID()
            except libvirt.libvirtError:
                continue  # gone between the list and now
            by_uuid[uuid] = dom
            guests.append(GuestInfo(uuid=uuid, name=name, pid=self._pid(uuid, name, dom_id)))
        with self._lock:
            if self.conn is conn:
                self._doms = by_uuid
                for uuid in [u for u in self._pids if u not in by_uuid]:
                    del self._pids[uuid]
                for uuid in [u for u in self._xml if u not in by_uuid]:
                    del self._xml[uuid]
                self._period_set &= by_uuid.keys()
        return guests

    def _pid(self, uuid: str, name: str, dom_id: int) -> int | None:
        known = self._pids.get(uuid)
        if known is not None and known[0] == dom_id and known[1] is not None:
            return known[1]
        pid = None
        if self.pid_dir:
            try:
                with open(os.path.join(self.pid_dir, f"{name}.pid")) as f:
                    candidate = int(f.read().split()[0])
                with open(os.path.join(self.proc_root, str(candidate), "cmdline"), "rb") as f:
                    if uuid.encode() in f.read():
                        pid = candidate
            except (OSError, ValueError, IndexError):
                pid = None
        self._pids[uuid] = (dom_id, pid)
        return pid

    # -- collection ---------------------------------------------------------------------
    def collect_all(self, guests: Iterable[GuestInfo], sections: Iterable[str]) -> dict[str, GuestData]:
        conn = self._ensure()
        guests = list(guests)
        wanted = [s for s in SECTIONS if s in set(sections)]
        flags = libvirt.VIR_DOMAIN_STATS_STATE
        if "memory" in wanted or "balloon" in wanted:
            flags |= libvirt.VIR_DOMAIN_STATS_BALLOON
        records: dict[str, dict[str, Any]] | None = None
        try:
            got = conn.getAllDomainStats(flags, libvirt.VIR_CONNECT_GET_ALL_DOMAINS_STATS_ACTIVE)
            records = {}
            for dom, record in got:
                uuid = dom.UUIDString()
                records[uuid] = record
                self._doms.setdefault(uuid, dom)
            self._faults.clear(BULK_STATS)
        except libvirt.libvirtError as e:
            err = self._error(e, "getAllDomainStats", conn)
            if isinstance(err, ConnectionLost):
                raise err from None
            self._faults.report(BULK_STATS, f"{err}; collecting per domain", logging.INFO)
        result: dict[str, GuestData] = {}
        for guest in guests:
            rec = None
            if records is not None:
                rec = records.get(guest.uuid)
                if rec is None or rec.get("state.state") in stats.INACTIVE_STATES:
                    continue  # not running any more: left out quietly
            try:
                result[guest.uuid] = self._collect_guest(conn, guest, rec or {}, wanted)
            except GuestGone:
                continue
        return result

    def _collect_guest(self, conn: Any, guest: GuestInfo, rec: dict[str, Any], wanted: list[str]) -> GuestData:
        data = GuestData()
        info: list[Any] | None = None

        def get_info() -> list[Any]:
            nonlocal info
            if info is None:
                info = self._call(conn, guest, "info", lambda d: d.info())
            return info

        for section in wanted:
            try:
                if section == "memory":
                    data.memory = self._memory(conn, guest, rec)
                elif section == "balloon":
                    data.balloon = self._balloon(conn, guest, rec, get_info)
                elif section == "cpu_tune":
                    data.cpu_tune = self._cpu_tune(conn, guest)
                elif section == "io_tune":
                    data.io_tune = self._io_tune(conn, guest)
            except (GuestGone, ConnectionLost):
                raise
            except HypervisorError as e:
                data.errors[section] = str(e)
        return data

    def _call(self, conn: Any, guest: GuestInfo, what: str, fn: Callable[[Any], Any]) -> Any:
        dom = self._dom(conn, guest)
        try:
            return fn(dom)
        except libvirt.libvirtError as e:
            err = self._error(e, f"guest {guest.name}: {what}", conn)
        if type(err) is HypervisorError and not self._running(dom):
            # QEMU went away during the call (e.g. "Unable to read from monitor"): the
            # guest is gone, which is normal under churn, not an error of this guest.
            err = GuestGone(str(err))
        raise err

    @staticmethod
    def _running(dom: Any) -> bool:
        """Whether the domain still runs; True when that cannot be told."""
        try:
            return bool(dom.isActive())
        except libvirt.libvirtError as e:
            return e.get_error_code() not in GONE_CODES

    def _memory(self, conn: Any, guest: GuestInfo, rec: dict[str, Any]) -> dict[str, Any]:
        raw = stats.bulk_memory(rec)
        if raw is None:
            raw = self._call(conn, guest, "memoryStats", lambda d: d.memoryStats())
            if not stats.reports_memory(raw):
                raise HypervisorError(f"guest {guest.name}: {stats.NO_BALLOON_STATS}")
        return stats.memory_section(raw)

    def _balloon(self, conn: Any, guest: GuestInfo, rec: dict[str, Any],
                 get_info: Callable[[], list[Any]]) -> dict[str, Any]:
        both = stats.bulk_balloon(rec)
        if both is None:
            info = get_info()
            both = int(info[2]), int(info[1])
        cur, top = both
        return {"balloon_cur": cur, "balloon_max": top,
                "balloon_min": self._domain_xml(conn, guest).balloon_min}

    def _cpu_tune(self, conn: Any, guest: GuestInfo) -> dict[str, Any]:
        params = self._call(conn, guest, "schedulerParameters", lambda d: d.schedulerParameters())
        if "vcpu_quota" not in params and "vcpu_period" not in params:
            raise NotSupported(f"guest {guest.name}: the driver has no vcpu_quota/vcpu_period scheduler parameters")
        xml = self._domain_xml(conn, guest)
        vcpus = xml.vcpus
        if vcpus is None:
            vcpus = self._call(conn, guest, "info", lambda d: d.info())[3]
        return {"vcpu_quota": params.get("vcpu_quota") or 0, "vcpu_period": params.get("vcpu_period") or 0,
                "vcpu_user_limit": xml.vcpu_user_limit, "vcpu_count": vcpus}

    def _io_tune(self, conn: Any, guest: GuestInfo) -> list[dict[str, Any]]:
        xml = self._domain_xml(conn, guest)
        out = []
        for disk in xml.disks:
            read_tune = operator.methodcaller("blockIoTune", disk.dev, 0)
            values = self._call(conn, guest, f"blockIoTune {disk.dev}", read_tune)
            out.append(stats.io_tune_entry(disk.dev, disk.path, xml.io_limits(disk), values))
        return out

    def _domain_xml(self, conn: Any, guest: GuestInfo) -> DomainXml:
        now = self._now()
        cached = self._xml.get(guest.uuid)
        if cached is not None and cached[0] > now:
            return cached[1]
        text = self._call(conn, guest, "XMLDesc", lambda d: d.XMLDesc(0))
        try:
            parsed = parse_domain_xml(text)
        except ValueError as e:
            raise HypervisorError(f"guest {guest.name}: {e}") from None
        self._xml[guest.uuid] = (now + self.xml_ttl * (1 + 0.5 * random.random()), parsed)
        return parsed

    def refresh(self) -> None:
        """Open the connection if it was lost, and set the balloon statistics period on
        every known domain that lacks it on this connection: the guests found since
        the last round, and all of them after a reconnection (a restarted libvirtd
        keeps its guests running). The one place the period is set."""
        conn = self._ensure()
        if self._stats_period is None:
            return
        with self._lock:
            if self.conn is not conn:
                return
            missing = [(uuid, dom) for uuid, dom in self._doms.items() if uuid not in self._period_set]
        failed: dict[int, list[tuple[str, str]]] = {}  # libvirt error code -> [(guest, message)]
        try:
            for uuid, dom in missing:
                try:
                    dom.setMemoryStatsPeriod(self._stats_period, libvirt.VIR_DOMAIN_AFFECT_LIVE)
                except libvirt.libvirtError as e:
                    try:
                        name = dom.name()
                    except libvirt.libvirtError:
                        name = uuid
                    err = self._error(e, f"guest {name}", conn)
                    if isinstance(err, ConnectionLost):
                        raise err from None
                    if not isinstance(err, GuestGone) and self._running(dom):
                        failed.setdefault(e.get_error_code(), []).append((name, e.get_error_message() or str(e)))
                with self._lock:
                    if self.conn is conn:
                        self._period_set.add(uuid)
        finally:
            stats.report_failed_round(self._period_kinds, "cannot set the balloon statistics period", failed)

    # Per-guest getters (the base class's collect_all contract; used by tools and tests).
    def guest_memory_stats(self, guest: GuestInfo) -> dict[str, Any]:
        return self._memory(self._ensure(), guest, {})

    def guest_balloon_info(self, guest: GuestInfo) -> dict[str, Any]:
        conn = self._ensure()
        return self._balloon(conn, guest, {}, lambda: self._call(conn, guest, "info", lambda d: d.info()))

    def guest_cpu_tune(self, guest: GuestInfo) -> dict[str, Any]:
        return self._cpu_tune(self._ensure(), guest)

    def guest_io_tune(self, guest: GuestInfo) -> list[dict[str, Any]] | None:
        return self._io_tune(self._ensure(), guest)

    # -- control ------------------------------------------------------------------------
    def set_balloon_target(self, guest: GuestInfo, target_kib: int) -> None:
        conn = self._ensure()
        self._call(conn, guest, f"setMemory({int(target_kib)})", lambda d: d.setMemory(int(target_kib)))

    def set_cpu_tune(self, guest: GuestInfo, quota: int | None = None, period: int | None = None) -> None:
        params = {}
        if quota is not None:
            params["vcpu_quota"] = int(quota)
        if period is not None:
            params["vcpu_period"] = int(period)
        if not params:
            return
        conn = self._ensure()
        self._call(conn, guest, f"setSchedulerParameters({params})",
                   lambda d: d.setSchedulerParametersFlags(params, libvirt.VIR_DOMAIN_AFFECT_LIVE))

    def set_io_tune(self, guest: GuestInfo, tunes: list[dict[str, Any]]) -> None:
        """Apply each tune's ``current`` (or ``ioTune``) limits to the disk with that
        path, else that target name. Raises HypervisorError for an unknown disk or
        a bad value (checked for all tunes before any is applied)."""
        conn = self._ensure()
        xml = self._domain_xml(conn, guest)
        checked = checked_io_tunes(guest, tunes)
        plan = [(disk_for(guest, tune, xml.disks, _disk_ident), tune.limits) for tune in checked]
        for disk, values in plan:
            if not values:
                continue  # every limit left as it is (None): libvirt refuses an empty call
            def apply(d: Any, disk: Any = disk, values: Mapping[str, int] = values) -> None:
                params = {k: int(v) for k, v in values.items()}
                try:
                    d.setBlockIoTune(disk.dev, params, libvirt.VIR_DOMAIN_AFFECT_LIVE)
                except libvirt.libvirtError as e:
                    # Some drivers (libvirt's test driver) take an unset burst maximum (0) as a
                    # limit of 0 and refuse any rate above it: raise those maxima to the rate.
                    if e.get_error_code() != libvirt.VIR_ERR_INVALID_ARG or "_max" not in str(e):
                        raise
                    present = d.blockIoTune(disk.dev, 0)
                    for key, value in list(params.items()):
                        if value and present.get(f"{key}_max", 0) < value:
                            params[f"{key}_max"] = value
                    d.setBlockIoTune(disk.dev, params, libvirt.VIR_DOMAIN_AFFECT_LIVE)
            self._call(conn, guest, f"setBlockIoTune {disk.dev}", apply)

    def qemu_agent_command(self, guest: GuestInfo, command: str | dict[str, Any], timeout: int = 10) -> Any:
        """Run a QEMU guest agent command through libvirt and return its decoded
        ``return`` value. Raises HypervisorError (NotSupported when the driver
        has no agent command), with the agent's error class and description."""
        import libvirt_qemu

        text = command if isinstance(command, str) else json.dumps(command)
        conn = self._ensure()
        reply = self._call(conn, guest, "qemuAgentCommand",
                           lambda d: libvirt_qemu.qemuAgentCommand(d, text, int(timeout), 0))
        try:
            obj = json.loads(reply)
        except (TypeError, ValueError):
            raise HypervisorError(f"guest {guest.name}: agent reply is not JSON: {str(reply)[:80]!r}") from None
        if "error" in obj:
            err = obj["error"]
            raise HypervisorError(f"guest {guest.name}: agent error {err.get('class', '?')}: {err.get('desc', '')}")
        return obj.get("return")

    def close(self) -> None:
        """Close the interface: later calls raise ConnectionLost. Returns promptly even
        when libvirtd does not answer (see LibvirtConnection.close)."""
        self.connection.close()
