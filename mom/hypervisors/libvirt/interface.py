"""LibvirtHypervisor: MOM's hypervisor interface over libvirt (libvirt-python).

Configuration: ``hypervisor-interface: libvirt`` and ``libvirt-hypervisor-uri``
('' = libvirt's default URI). Needs the ``libvirt`` extra (``pip install
'mom-kvm[libvirt]'``). The class composes the package's parts, each of which
says how it talks to libvirt:

- :mod:`.connection`: the connection, its run state, back-off and error
  classification; :mod:`.events`: the event loop and callbacks;
- :mod:`.domains`: discovery (one ``listAllDomains`` call, pids from libvirt's
  pid files), the domain objects and the domain XML cache;
- :mod:`.collection`: collect_all (one ``getAllDomainStats`` call per tick)
  and the per-guest getters, mapped by :mod:`.stats`;
- :mod:`.period`: the balloon statistics period, set in :meth:`refresh`;
- :mod:`.controls`: balloon, virtio-mem, CPU and IO controls, the guest agent.

When the connection delivers domain lifecycle events, a started or stopped
domain makes the engine run discovery at once (:meth:`set_change_listener`);
lifecycle, metadata and tunable events also make the interface fetch that
domain's XML again.

Faults: see :mod:`.connection` for outages (ConnectionLost, one message per
outage, back-off). The daemon connects lazily (on the first call, after
``momd -d`` forked). A domain that disappears mid-tick is normal under churn:
it is left out quietly (GuestGone, which the engine logs at debug level).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

import libvirt

from mom.core.host_paths import PROC_ROOT, SYS_ROOT
from mom.hypervisors.base import Capability, GuestData, GuestInfo, HypervisorError, HypervisorInterface
from mom.hypervisors.libvirt import events as events_module
from mom.hypervisors.libvirt.collection import Collection
from mom.hypervisors.libvirt.connection import LibvirtConnection, default_pid_dir
from mom.hypervisors.libvirt.controls import Controls
from mom.hypervisors.libvirt.domain_xml import DomainXml
from mom.hypervisors.libvirt.domains import Domains, XmlCache
from mom.hypervisors.libvirt.period import StatsPeriod
from mom.hypervisors.runstate import RunState
from mom.hypervisors.settings import LibvirtSettings

log = logging.getLogger("mom.libvirt")


class LibvirtHypervisor(HypervisorInterface):
    """The libvirt hypervisor interface (see the module documentation)."""

    capabilities = frozenset({Capability.BULK_STATS, Capability.EVENTS, Capability.GUEST_AGENT})
    settings_type = LibvirtSettings

    def __init__(self, uri: str = "", *, sys_root: str = SYS_ROOT, proc_root: str = PROC_ROOT,
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
        self._pid_dir_setting = pid_dir
        self._events_wanted = events
        # What libvirt's event thread calls on this interface's connections.
        self.event_handlers = events_module.Handlers(closed=self._on_close, lifecycle=self._on_lifecycle,
                                                     changed=self._on_change)
        self.connection = LibvirtConnection(
            uri, opener=opener, retry_min=retry_min, retry_max=retry_max, monotonic=monotonic,
            prepare=lambda: self._events_wanted and events_module.EventLoop.ensure(),
            register=lambda conn, uri: events_module.register(conn, uri, self.event_handlers),
            attached=self._attached, release=events_module.release)
        self._lock = self.connection.lock  # the parts' caches belong to the current connection
        self.domains = Domains(self.connection, proc_root)
        self.domains.pid_dir = pid_dir
        self.xml = XmlCache(self.domains, xml_ttl, monotonic)
        self.period = StatsPeriod(self.connection, self.domains, stats_period)
        self.collection = Collection(self.connection, self.domains, self.xml, monotonic,
                                     events_active=lambda: self.events_active)
        self.controls = Controls(self.connection, self.domains, self.xml)
        self._listener: Callable[[], None] | None = None
        self.events_active = False
        if connect_now:
            try:
                self.connection.ensure()
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

    @property
    def pid_dir(self) -> str | None:
        """Where the QEMU driver's NAME.pid files are (None: no local pid files)."""
        return self.domains.pid_dir

    def _attached(self, conn: Any, uri: str, ids: list[int] | None) -> None:
        """The connection changed (lock held): a new one (conn) or none (conn None).
        A new connection starts with empty caches: libvirtd may have restarted."""
        self.domains.reset()
        if conn is None:
            return
        self.period.clear()
        self.xml.clear()
        self.events_active = ids is not None
        if self._pid_dir_setting is None:
            self.domains.pid_dir = default_pid_dir(uri)

    # -- events (called from libvirt's event thread) -----------------------------------------
    def _on_close(self, conn: Any, reason: int, opaque: Any) -> None:
        if reason == events_module.CLIENT_CLOSE:
            return
        self.connection.drop(conn, f"connection closed (reason {reason})")

    def _on_lifecycle(self, conn: Any, dom: Any, event: int, detail: int, opaque: Any) -> None:
        try:
            uuid = dom.UUIDString()
        except libvirt.libvirtError:
            return
        with self._lock:
            self.xml.drop(uuid)
            if event in events_module.GONE_EVENTS:
                self.domains.forget(uuid)
                self.period.forget(uuid)
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
            self.xml.drop(uuid)

    def set_change_listener(self, listener: Callable[[], None] | None) -> bool:
        """Call ``listener`` (from the event thread) when a domain starts or stops.
        True: libvirt's events are used whenever the connection delivers them."""
        self._listener = listener
        return self._events_wanted

    # -- discovery and the domains ----------------------------------------------------------
    def list_guests(self) -> list[GuestInfo]:
        def prune(running: set[str]) -> None:
            self.xml.keep_only(running)
            self.period.keep_only(running)
        return self.domains.list_guests(prune)

    def domain(self, guest: GuestInfo) -> Any:
        """The guest's libvirt domain object on the current connection (virDomain).
        Raises HypervisorError (GuestGone when there is no such domain)."""
        return self.domains.lookup(self.connection.ensure(), guest)

    def domain_xml(self, guest: GuestInfo) -> DomainXml:
        """What MOM reads from the guest's domain XML (cached; see :class:`.domains.XmlCache`)."""
        return self.xml.get(self.connection.ensure(), guest)

    # -- collection -------------------------------------------------------------------------
    def collect_all(self, guests: Iterable[GuestInfo], sections: Iterable[str]) -> dict[str, GuestData]:
        return self.collection.collect_all(guests, sections)

    def refresh(self) -> None:
        """Open the connection if it was lost, and set the balloon statistics period on
        every known domain that lacks it on this connection: the guests found since
        the last round, and all of them after a reconnection (a restarted libvirtd
        keeps its guests running). The one place the period is set."""
        self.period.set_missing()

    # Per-guest getters (the base class's collect_all contract; used by tools and tests).
    def guest_memory_stats(self, guest: GuestInfo) -> dict[str, Any]:
        return self.collection.memory(self.connection.ensure(), guest, {})

    def guest_balloon_info(self, guest: GuestInfo) -> dict[str, Any]:
        return self.collection.balloon(self.connection.ensure(), guest, {})

    def guest_cpu_tune(self, guest: GuestInfo) -> dict[str, Any]:
        return self.collection.cpu_tune(self.connection.ensure(), guest)

    def guest_io_tune(self, guest: GuestInfo) -> list[dict[str, Any]] | None:
        return self.collection.io_tune(self.connection.ensure(), guest)

    def guest_virtio_mem(self, guest: GuestInfo) -> dict[str, Any]:
        return self.collection.virtio_mem(self.connection.ensure(), guest)

    # -- control ------------------------------------------------------------------------
    def set_balloon_target(self, guest: GuestInfo, target_kib: int) -> None:
        self.controls.set_balloon_target(guest, target_kib)

    def set_virtio_mem_requested(self, guest: GuestInfo, size_kib: int) -> None:
        """See :meth:`.controls.Controls.set_virtio_mem_requested`."""
        self.controls.set_virtio_mem_requested(guest, size_kib)

    def set_cpu_tune(self, guest: GuestInfo, quota: int | None = None, period: int | None = None) -> None:
        self.controls.set_cpu_tune(guest, quota, period)

    def set_io_tune(self, guest: GuestInfo, tunes: list[dict[str, Any]]) -> None:
        """See :meth:`.controls.Controls.set_io_tune`."""
        self.controls.set_io_tune(guest, tunes)

    def qemu_agent_command(self, guest: GuestInfo, command: str | dict[str, Any], timeout: int = 10) -> Any:
        """See :meth:`.controls.Controls.qemu_agent_command`."""
        return self.controls.qemu_agent_command(guest, command, timeout)

    def close(self) -> None:
        """Close the interface: later calls raise ConnectionLost. Returns promptly even
        when libvirtd does not answer (see LibvirtConnection.close)."""
        self.connection.close()
