"""LibvirtHypervisor: MOM's hypervisor interface over libvirt (libvirt-python).

Configuration: ``hypervisor-interface: libvirt`` and ``libvirt-hypervisor-uri``
('' = libvirt's default URI). Needs the ``libvirt`` extra (``pip install
'mom-kvm[libvirt]'``).

How it talks to libvirt, per tick and per guest:

- Discovery: one ``listAllDomains(ACTIVE)`` call; name and UUID are local
  accessors of the returned domain objects. The QEMU pid comes from libvirt's
  pid file (``/run/libvirt/qemu/NAME.pid`` for qemu:///system), checked
  against ``/proc/PID/cmdline`` holding the domain's UUID; no ``ps`` scan.
  When the connection delivers domain lifecycle events, a started or stopped
  domain makes the engine run discovery at once (see
  :meth:`set_change_listener`). One process-wide thread runs libvirt's event
  loop, whatever the number of guests.
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
  ``vcpu_quota``/``vcpu_period``; ``setBlockIoTune`` per disk; KSM through
  sysfs under ``sys_root`` (the base class); the QEMU guest agent through
  ``qemuAgentCommand`` (:meth:`qemu_agent_command`, used by GuestQemuAgent).

Faults: while libvirtd cannot be reached (at start, or after it went away),
every call raises :class:`ConnectionLost` (a HypervisorUnavailable) with one
constant message per outage; the interface logs one warning when the outage
starts and one line when it is connected again, and reconnects on later calls
with exponential back-off between failed attempts. The engine keeps its guests
meanwhile. The connection is opened outside the interface's lock, so close()
never waits for a libvirtd that does not answer; the daemon connects lazily (on
the first call, after ``momd -d`` forked). A domain that disappears mid-tick is
normal under churn: it is left out quietly (GuestGone, which the engine logs at
debug level), also when a call fails with another error and the domain then
turns out not to be running (QEMU exited during the call). An error in one
guest's section is recorded in its GuestData and never spoils the other
guests. A per-guest problem the interface reports itself (the statistics
period cannot be set) is one warning per kind, naming how many guests it hit,
not one per guest.

Memory statistics fields (KiB unless said): mem_available (guest total,
virtio "available"), mem_unused ("unused"), mem_free (unused + disk_caches),
mem_usable ("usable"), disk_caches ("disk_caches"), major_fault, minor_fault
(counts), swap_in, swap_out.
"""

from __future__ import annotations

import json
import logging
import os
import random
import threading
import time
import urllib.parse
from typing import Any, Callable, Iterable, Mapping

import libvirt

from mom.hypervisors.base import (
    SECTIONS,
    GuestData,
    GuestGone,
    GuestInfo,
    HypervisorError,
    HypervisorInterface,
    HypervisorUnavailable,
    NotSupported,
    checked_io_tunes,
    disk_for,
)
from mom.core.disks import IO_KEYS
from mom.hypervisors.libvirt_xml import DomainXml, parse_domain_xml

log = logging.getLogger("mom.libvirt")

# memoryStats() / balloon.* key -> MOM field
MEMORY_FIELDS = {
    "available": "mem_available",
    "unused": "mem_unused",
    "usable": "mem_usable",
    "disk_caches": "disk_caches",
    "major_fault": "major_fault",
    "minor_fault": "minor_fault",
    "swap_in": "swap_in",
    "swap_out": "swap_out",
}
# The keys that say the guest's balloon driver really reports statistics.
_GUEST_STAT_KEYS = ("available", "unused", "usable")

_GONE_CODES = {libvirt.VIR_ERR_NO_DOMAIN}
_UNSUPPORTED_CODES = {libvirt.VIR_ERR_NO_SUPPORT, libvirt.VIR_ERR_OPERATION_UNSUPPORTED,
                      libvirt.VIR_ERR_ARGUMENT_UNSUPPORTED}
_CONNECTION_CODES = {libvirt.VIR_ERR_SYSTEM_ERROR, libvirt.VIR_ERR_INVALID_CONN, libvirt.VIR_ERR_NO_CONNECT,
                     libvirt.VIR_ERR_RPC, libvirt.VIR_ERR_AUTH_FAILED}
_CONNECTION_DOMAINS = {libvirt.VIR_FROM_RPC, libvirt.VIR_FROM_REMOTE}
_INACTIVE_STATES = {libvirt.VIR_DOMAIN_SHUTOFF, libvirt.VIR_DOMAIN_CRASHED}


def _disk_ident(disk: Any) -> tuple[str, str | None]:
    return disk.dev, disk.path


def _quiet_errors(ctx: Any, err: Any) -> None:
    """libvirt prints every error on stderr by default; MOM reports them itself."""


libvirt.registerErrorHandler(_quiet_errors, None)


class ConnectionLost(HypervisorUnavailable):
    """libvirtd cannot be reached (it went away or is restarting).

    The interface reconnects on later calls, with back-off. Every error of one
    outage carries the same message, so the engine records one fault."""


# --- the process-wide event loop -----------------------------------------------------

class _EventLoop:
    """libvirt's default event loop on one daemon thread per process.

    The implementation is registered once (the registration survives a fork);
    the thread runs in the process that uses it: a process forked after its
    parent started the loop (``momd -d``) starts its own."""

    _lock = threading.Lock()
    _registered = False
    _pid: int | None = None  # the process whose thread runs the loop

    @classmethod
    def ensure(cls) -> bool:
        """Start the loop in this process if needed; False when this libvirt cannot run one."""
        with cls._lock:
            if cls._pid == os.getpid():
                return True
            if not cls._registered:
                try:
                    libvirt.virEventRegisterDefaultImpl()
                except libvirt.libvirtError as e:  # pragma: no cover - very old libvirt
                    log.warning("libvirt events unavailable: %s", e.get_error_message())
                    return False
                cls._registered = True
            threading.Thread(target=cls._run, name="mom-libvirt-events", daemon=True).start()
            cls._pid = os.getpid()
            return True

    @staticmethod
    def _run() -> None:
        while True:
            try:
                libvirt.virEventRunDefaultImpl()
            except Exception:  # noqa: BLE001 - the loop must survive anything
                time.sleep(0.5)


# --- the interface ----------------------------------------------------------------------

def default_pid_dir(uri: str) -> str | None:
    """Where libvirt's QEMU driver keeps NAME.pid for ``uri`` (None: no local pid file).

    A ``socket=DIR/libvirt-sock`` parameter names libvirtd's run directory: DIR/qemu."""
    parsed = urllib.parse.urlsplit(uri)
    socket_path = urllib.parse.parse_qs(parsed.query).get("socket")
    if parsed.scheme in ("qemu", "qemu+unix") and not parsed.hostname and socket_path:
        return os.path.join(os.path.dirname(socket_path[0]), "qemu")
    if uri.startswith("qemu:///system") or uri.startswith("qemu+unix:///system"):
        return "/run/libvirt/qemu"
    if uri.startswith("qemu:///session") or uri.startswith("qemu+unix:///session"):
        runtime = os.environ.get("XDG_RUNTIME_DIR") or os.path.expanduser("~/.cache")
        return os.path.join(runtime, "libvirt", "qemu", "run")
    return None


class _Once:
    """Log each distinct message per key once, and once when the key clears."""

    def __init__(self) -> None:
        self._active: dict[str, str] = {}
        self._lock = threading.Lock()

    def report(self, key: str, message: str, level: int = logging.WARNING) -> None:
        with self._lock:
            if self._active.get(key) == message:
                return
            self._active[key] = message
        log.log(level, "%s: %s", key, message)

    def clear(self, key: str, note: str | None = None) -> None:
        with self._lock:
            if self._active.pop(key, None) is None:
                return
        log.info("%s: %s", key, note or "recovered")


class _PerKind:
    """One warning per kind of per-guest problem, not one per guest: the first time
    a kind (a libvirt error code) is seen, one warning says for how many guests and
    why (the first guest's message); later rounds of the same kind are debug lines."""

    def __init__(self, what: str) -> None:
        self.what = what
        self._warned: set[int] = set()
        self._lock = threading.Lock()

    def report(self, failed: Mapping[int, list[tuple[str, str]]]) -> None:
        """failed: kind -> [(guest name, message)] of one round."""
        for kind, hits in failed.items():
            with self._lock:
                new = kind not in self._warned
                self._warned.add(kind)
            names = sorted(name for name, _ in hits)
            shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
            count = f"{len(names)} guest{'s' if len(names) != 1 else ''}"
            log.log(logging.WARNING if new else logging.DEBUG, "libvirt: %s for %s (%s): %s%s", self.what, count,
                    shown, hits[0][1], "; later guests with this error are logged at debug level" if new else "")


class LibvirtHypervisor(HypervisorInterface):
    """The libvirt hypervisor interface (see the module documentation)."""

    names = ("libvirt",)
    bulk = True

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
        self._opener = opener or libvirt.open
        self.retry_min, self.retry_max, self.xml_ttl = retry_min, retry_max, xml_ttl
        self._now = monotonic
        self._name = f"libvirt {uri or '(default URI)'}"
        # Guards the connection state; never held while talking to libvirtd.
        self._lock = threading.RLock()
        self.conn: Any = None
        self.connected_uri = ""
        self.connections = 0  # successful opens (1 = first connection; more = reconnections)
        self._connecting = False  # a thread is opening a connection (outside the lock)
        self._closed = False
        self._outage: str | None = None  # the message of every error of the current outage
        self._callback_ids: list[int] = []
        self._backoff = retry_min
        self._next_attempt = 0.0
        self._doms: dict[str, Any] = {}        # uuid -> virDomain of the current connection
        self._pids: dict[str, tuple[int, int | None]] = {}  # uuid -> (domain id, pid)
        self._xml: dict[str, tuple[float, DomainXml]] = {}  # uuid -> (expiry, parsed XML)
        self._stats_period = None if stats_period is None else max(1, int(round(stats_period)))
        self._period_set: set[str] = set()   # uuids whose stats period is set on this connection
        self._listener: Callable[[], None] | None = None
        self._once = _Once()
        self._period_faults = _PerKind("cannot set the balloon statistics period")
        self.events_active = False
        if connect_now:
            try:
                self._ensure()
            except HypervisorError:
                pass  # logged once; retried on every call with back-off

    @classmethod
    def from_config(cls, config: Any, clock: Any = None) -> "LibvirtHypervisor":
        main = config.main
        return cls(main.libvirt_hypervisor_uri, sys_root=main.sys_root, proc_root=main.proc_root,
                   stats_period=main.guest_monitor_interval, connect_now=False)

    # -- connection ---------------------------------------------------------------------
    def _ensure(self) -> Any:
        """The live connection, opening one when needed. Raises ConnectionLost.

        The connection is opened outside the lock, so close() and the event
        thread never wait for a libvirtd that does not answer."""
        with self._lock:
            if self.conn is not None:
                return self.conn
            if self._closed:
                raise ConnectionLost(f"{self._name}: the interface is closed")
            if self._connecting or self._now() < self._next_attempt:
                raise ConnectionLost(self._outage or f"{self._name}: connecting")
            self._connecting = True
        try:
            events = self._events_wanted and _EventLoop.ensure()
            conn = self._opener(self.uri or None)
            if conn is None:  # old bindings returned None on failure
                raise libvirt.libvirtError("cannot open connection")
        except libvirt.libvirtError as e:
            error = e.get_error_message() or str(e)
            with self._lock:
                self._connecting = False
                self._next_attempt = self._now() + self._backoff
                self._backoff = min(self._backoff * 2, self.retry_max)
                message, new = self._begin_outage(f"cannot connect: {error}")
            if new:
                log.warning("%s", message)
            else:
                log.debug("libvirt: reconnection failed: %s", error)
            raise ConnectionLost(message) from None
        except BaseException:
            with self._lock:
                self._connecting = False
            raise
        try:
            uri = conn.getURI()
        except libvirt.libvirtError:
            uri = self.uri
        ids = self._register_callbacks(conn, uri) if events else None
        with self._lock:
            self._connecting = False
            closed = self._closed
            if not closed:
                self.conn = conn
                self.connections += 1
                self._backoff = self.retry_min
                self._next_attempt = 0.0
                self._outage = None
                self._doms.clear()
                self._period_set.clear()
                self._xml.clear()
                self._callback_ids = ids or []
                self.events_active = ids is not None
                self.connected_uri = uri
                if self._pid_dir_setting is None:
                    self.pid_dir = default_pid_dir(uri)
                first = self.connections == 1
        if closed:  # close() was called while this connection was being opened
            self._release(conn, ids or [])
            raise ConnectionLost(f"{self._name}: the interface is closed")
        log.info("libvirt: %s to %s (events %s)", "connected" if first else "reconnected", uri,
                 "on" if ids is not None else "off")
        return conn

    def _begin_outage(self, reason: str) -> tuple[str, bool]:
        """(The current outage's message, whether it starts now). Call with the lock held."""
        if self._outage is not None:
            return self._outage, False
        self._outage = f"{self._name}: not connected ({reason}); reconnecting in the background"
        return self._outage, True

    def _register_callbacks(self, conn: Any, uri: str) -> list[int] | None:
        """Register the event callbacks: their ids, None when there are no domain events."""
        try:
            conn.setKeepAlive(5, 3)
        except (libvirt.libvirtError, AttributeError):
            pass  # local drivers have no keepalive
        try:
            conn.registerCloseCallback(self._on_close, None)
        except (libvirt.libvirtError, AttributeError):
            pass
        ids = []
        try:
            ids.append(conn.domainEventRegisterAny(None, libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE,
                                                   self._on_lifecycle, None))
        except libvirt.libvirtError as e:
            log.info("libvirt: no domain events on %s (%s); discovery polls", uri, e.get_error_message())
            return None
        for event_id in (getattr(libvirt, "VIR_DOMAIN_EVENT_ID_METADATA_CHANGE", None),
                         getattr(libvirt, "VIR_DOMAIN_EVENT_ID_TUNABLE", None)):
            if event_id is None:
                continue
            try:
                ids.append(conn.domainEventRegisterAny(None, event_id, self._on_change, None))
            except libvirt.libvirtError:
                pass
        return ids

    @staticmethod
    def _release(conn: Any, ids: list[int]) -> None:
        """Deregister the callbacks and close a connection (errors ignored)."""
        for cid in ids:
            try:
                conn.domainEventDeregisterAny(cid)
            except libvirt.libvirtError:
                pass
        try:
            conn.unregisterCloseCallback()
        except (libvirt.libvirtError, AttributeError):
            pass
        try:
            conn.close()
        except Exception:  # noqa: BLE001 - closing anyway
            pass

    def _on_close(self, conn: Any, reason: int, opaque: Any) -> None:
        if reason == getattr(libvirt, "VIR_CONNECT_CLOSE_REASON_CLIENT", 3):
            return
        self._drop(conn, f"connection closed (reason {reason})")

    def _drop(self, conn: Any, why: str) -> str:
        """Forget a broken connection (the next call opens a new one); the outage's message."""
        with self._lock:
            if conn is None or self.conn is not conn:
                return self._outage or f"{self._name}: connection lost; reconnecting in the background"
            self.conn = None
            self._callback_ids = []
            self._doms.clear()
            self._next_attempt = 0.0  # first reconnection at once, back-off after failures
            message, new = self._begin_outage(f"connection lost: {why}")
        if new:
            log.warning("%s", message)
        try:
            conn.close()
        except Exception:  # noqa: BLE001 - the connection is broken anyway
            pass
        return message

    def _on_lifecycle(self, conn: Any, dom: Any, event: int, detail: int, opaque: Any) -> None:
        try:
            uuid = dom.UUIDString()
        except libvirt.libvirtError:
            return
        with self._lock:
            self._xml.pop(uuid, None)
            if event in (libvirt.VIR_DOMAIN_EVENT_STOPPED, libvirt.VIR_DOMAIN_EVENT_UNDEFINED):
                self._doms.pop(uuid, None)
                self._period_set.discard(uuid)
        if event in (libvirt.VIR_DOMAIN_EVENT_STARTED, libvirt.VIR_DOMAIN_EVENT_STOPPED,
                     libvirt.VIR_DOMAIN_EVENT_CRASHED) and self._listener is not None:
            try:
                self._listener()
            except Exception:  # noqa: BLE001 - never break the event loop
                log.exception("change listener failed")

    def _on_change(self, conn: Any, dom: Any, *args: Any) -> None:
        try:
            uuid = dom.UUIDString()
        except libvirt.libvirtError:
            return
        with self._lock:
            self._xml.pop(uuid, None)

    def set_change_listener(self, listener: Callable[[], None] | None) -> None:
        """Call ``listener`` (from the event thread) when a domain starts or stops."""
        self._listener = listener

    def _error(self, e: libvirt.libvirtError, what: str, conn: Any) -> HypervisorError:
        """Turn a libvirtError into the matching HypervisorError (and drop a broken connection)."""
        code, domain = e.get_error_code(), e.get_error_domain()
        message = f"{what}: {e.get_error_message() or e}"
        alive = True
        try:
            alive = bool(conn.isAlive())
        except Exception:  # noqa: BLE001
            alive = False
        if not alive or code in _CONNECTION_CODES or (domain in _CONNECTION_DOMAINS
                                                       and code != libvirt.VIR_ERR_NO_DOMAIN):
            if alive:
                # An RPC-level error on a connection that still answers: check before dropping it.
                try:
                    conn.getLibVersion()
                except libvirt.libvirtError:
                    alive = False
            if not alive:
                return ConnectionLost(self._drop(conn, e.get_error_message() or str(e)))
        if code in _GONE_CODES or (code == libvirt.VIR_ERR_OPERATION_INVALID and "not running" in str(e)):
            return GuestGone(message)
        if code in _UNSUPPORTED_CODES:
            return NotSupported(message)
        return HypervisorError(message)

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
            for dom, stats in got:
                uuid = dom.UUIDString()
                records[uuid] = stats
                self._doms.setdefault(uuid, dom)
            self._once.clear("libvirt bulk statistics")
        except libvirt.libvirtError as e:
            err = self._error(e, "getAllDomainStats", conn)
            if isinstance(err, ConnectionLost):
                raise err from None
            self._once.report("libvirt bulk statistics", f"{err}; collecting per domain", logging.INFO)
        result: dict[str, GuestData] = {}
        for guest in guests:
            rec = None
            if records is not None:
                rec = records.get(guest.uuid)
                if rec is None or rec.get("state.state") in _INACTIVE_STATES:
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
            return e.get_error_code() not in _GONE_CODES

    def _memory(self, conn: Any, guest: GuestInfo, rec: dict[str, Any]) -> dict[str, Any]:
        if any(f"balloon.{k}" in rec for k in _GUEST_STAT_KEYS):
            raw = {k: rec[f"balloon.{k}"] for k in MEMORY_FIELDS if f"balloon.{k}" in rec}
        else:
            raw = self._call(conn, guest, "memoryStats", lambda d: d.memoryStats())
            if not any(k in raw for k in _GUEST_STAT_KEYS):
                raise HypervisorError(
                    f"guest {guest.name}: the guest reports no balloon statistics "
                    f"(no virtio-balloon driver in the guest, or no statistics period set)")
        out = {MEMORY_FIELDS[k]: int(v) for k, v in raw.items() if k in MEMORY_FIELDS}
        if "unused" in raw and "disk_caches" in raw:
            out["mem_free"] = int(raw["unused"]) + int(raw["disk_caches"])
        return out

    def _balloon(self, conn: Any, guest: GuestInfo, rec: dict[str, Any],
                 get_info: Callable[[], list[Any]]) -> dict[str, Any]:
        cur, top = rec.get("balloon.current"), rec.get("balloon.maximum")
        if cur is None or top is None:
            info = get_info()
            top, cur = info[1], info[2]
        return {"balloon_cur": int(cur), "balloon_max": int(top),
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
            values = self._call(conn, guest, f"blockIoTune {disk.dev}", lambda d: d.blockIoTune(disk.dev, 0))
            limits = xml.io_limits(disk)
            out.append({"name": disk.dev, "path": disk.path, "guaranteed": dict(limits["guaranteed"]),
                        "maximum": dict(limits["maximum"]),
                        "current": {k: int(values.get(k, 0)) for k in IO_KEYS}})
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
            self._period_faults.report(failed)

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
        when libvirtd does not answer (a connection still being opened is closed
        when it is done; the current one is released in the background)."""
        with self._lock:
            self._closed = True
            conn, self.conn = self.conn, None
            ids, self._callback_ids = self._callback_ids, []
            self._doms.clear()
        if conn is None:
            return
        releaser = threading.Thread(target=self._release, args=(conn, ids), name="mom-libvirt-close", daemon=True)
        releaser.start()
        releaser.join(2.0)
