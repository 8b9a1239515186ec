"""Collection over libvirt: the GuestData sections of every guest in one tick.

``bulk``: one ``getAllDomainStats(STATE | BALLOON)`` call for all guests.
When the driver leaves a domain's ``balloon.*`` statistics empty (libvirt's
test driver does; so does a guest without a balloon device), that guest falls
back to ``memoryStats()`` and/or ``info()``. balloon_min, free page
reporting, the vCPU count, the oVirt vcpuLimit metadata, the disk list and the
virtio-mem devices come from the domain XML (:class:`~.domains.XmlCache`). The mapping of the values is :mod:`.stats`'.
The balloon section needs the XML's plugged virtio-mem sizes too (libvirt
counts them in its balloon figures): a guest with a device has its XML read
fresh once per tick, for both sections, unless events keep the cache fresh.

An error in one guest's section is recorded in its GuestData and never spoils
the other guests; a guest that went away is left out quietly (GuestGone).
"""

from __future__ import annotations

import logging
import operator
from collections.abc import Callable, Iterable
from typing import Any

import libvirt

from mom.core.faults import FaultKey, FaultLog
from mom.hypervisors.base import (
    SECTIONS,
    GuestData,
    GuestGone,
    GuestInfo,
    HypervisorError,
    NotSupported,
    record_section_error,
)
from mom.hypervisors.libvirt import stats
from mom.hypervisors.libvirt.connection import ConnectionLost, LibvirtConnection
from mom.hypervisors.libvirt.domain_xml import DomainXml
from mom.hypervisors.libvirt.domains import Domains, XmlCache

# getAllDomainStats failing: logged once ("libvirt bulk statistics: ..."), and once when it works again.
BULK_STATS = FaultKey("libvirt", "bulk statistics")


class Collection:
    """The libvirt interface's collect_all and per-guest getters."""

    def __init__(self, connection: LibvirtConnection, domains: Domains, xml: XmlCache,
                 monotonic: Callable[[], float], events_active: Callable[[], bool] = lambda: False) -> None:
        """events_active: whether the connection's events keep the XML cache fresh
        (the virtio-mem sizes change as the guest plugs)."""
        self.connection = connection
        self.domains = domains
        self.xml = xml
        self._events_active = events_active
        self._faults = FaultLog(stats.log, monotonic)  # the bulk call's fall-back, logged once until it clears

    def collect_all(self, guests: Iterable[GuestInfo], sections: Iterable[str]) -> dict[str, GuestData]:
        conn = self.connection.ensure()
        guests = list(guests)
        wanted = [s for s in SECTIONS if s in set(sections)]
        records = self._bulk(conn, wanted)
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

    def _bulk(self, conn: Any, wanted: list[str]) -> dict[str, dict[str, Any]] | None:
        """Every running domain's bulk record by uuid; None when the driver refuses the call."""
        flags = libvirt.VIR_DOMAIN_STATS_STATE
        if "memory" in wanted or "balloon" in wanted:
            flags |= libvirt.VIR_DOMAIN_STATS_BALLOON
        try:
            got = conn.getAllDomainStats(flags, libvirt.VIR_CONNECT_GET_ALL_DOMAINS_STATS_ACTIVE)
        except libvirt.libvirtError as e:
            err = self.connection.error(e, "getAllDomainStats", conn)
            if isinstance(err, ConnectionLost):
                raise err from None
            self._faults.report(BULK_STATS, f"{err}; collecting per domain", logging.INFO)
            return None
        records: dict[str, dict[str, Any]] = {}
        for dom, record in got:
            uuid = dom.UUIDString()
            records[uuid] = record
            self.domains.by_uuid.setdefault(uuid, dom)
        self._faults.clear(BULK_STATS)
        return records

    def _collect_guest(self, conn: Any, guest: GuestInfo, rec: dict[str, Any], wanted: list[str]) -> GuestData:
        data = GuestData()
        info: list[Any] | None = None
        xml: DomainXml | None = None

        def get_xml() -> DomainXml:
            nonlocal xml
            if xml is None:
                xml = self._xml_with_plugged_sizes(conn, guest)
            return xml

        def get_info() -> list[Any]:
            nonlocal info
            if info is None:
                info = self.domains.call(conn, guest, "info", lambda d: d.info())
            return info

        for section in wanted:
            try:
                if section == "memory":
                    data.memory = self.memory(conn, guest, rec)
                elif section == "balloon":
                    data.balloon = self.balloon(conn, guest, rec, get_info, get_xml)
                elif section == "cpu_tune":
                    data.cpu_tune = self.cpu_tune(conn, guest)
                elif section == "io_tune":
                    data.io_tune = self.io_tune(conn, guest)
                elif section == "virtio_mem":
                    data.virtio_mem = self.virtio_mem(conn, guest, get_xml)
            except (GuestGone, ConnectionLost):
                raise
            except HypervisorError as e:
                record_section_error(data, section, e)
        return data

    # -- the sections -----------------------------------------------------------------------
    def memory(self, conn: Any, guest: GuestInfo, rec: dict[str, Any]) -> dict[str, Any]:
        raw = stats.bulk_memory(rec)
        if raw is None:
            raw = self.domains.call(conn, guest, "memoryStats", lambda d: d.memoryStats())
            if not stats.reports_memory(raw):
                raise HypervisorError(f"guest {guest.name}: {stats.NO_BALLOON_STATS}")
        return stats.memory_section(raw)

    def balloon(self, conn: Any, guest: GuestInfo, rec: dict[str, Any],
                get_info: Callable[[], list[Any]] | None = None,
                get_xml: Callable[[], DomainXml] | None = None) -> dict[str, Any]:
        """The boot memory's balloon: libvirt's figures (bulk record, else info())
        less the virtio-mem sizes it counts in them (:func:`.stats.balloon_section`)."""
        both = stats.bulk_balloon(rec)
        if both is None:
            info = get_info() if get_info is not None else self.domains.call(conn, guest, "info", lambda d: d.info())
            both = int(info[2]), int(info[1])
        cur, top = both
        xml = get_xml() if get_xml is not None else self._xml_with_plugged_sizes(conn, guest)
        return stats.balloon_section(cur, top, xml)

    def cpu_tune(self, conn: Any, guest: GuestInfo) -> dict[str, Any]:
        params = self.domains.call(conn, guest, "schedulerParameters", lambda d: d.schedulerParameters())
        if "vcpu_quota" not in params and "vcpu_period" not in params:
            raise NotSupported(f"guest {guest.name}: the driver has no vcpu_quota/vcpu_period scheduler parameters")
        xml = self.xml.get(conn, guest)
        vcpus = xml.vcpus
        if vcpus is None:
            vcpus = self.domains.call(conn, guest, "info", lambda d: d.info())[3]
        return {"vcpu_quota": params.get("vcpu_quota") or 0, "vcpu_period": params.get("vcpu_period") or 0,
                "vcpu_user_limit": xml.vcpu_user_limit, "vcpu_count": vcpus}

    def io_tune(self, conn: Any, guest: GuestInfo) -> list[dict[str, Any]]:
        xml = self.xml.get(conn, guest)
        out = []
        for disk in xml.disks:
            read_tune = operator.methodcaller("blockIoTune", disk.dev, 0)
            values = self.domains.call(conn, guest, f"blockIoTune {disk.dev}", read_tune)
            out.append(stats.io_tune_entry(disk.dev, disk.path, xml.io_limits(disk), values))
        return out

    def virtio_mem(self, conn: Any, guest: GuestInfo,
                   get_xml: Callable[[], DomainXml] | None = None) -> dict[str, Any]:
        """The guest's virtio-mem device from its XML. Raises NotSupported when it has none."""
        xml = get_xml() if get_xml is not None else self._xml_with_plugged_sizes(conn, guest)
        device = xml.virtio_mem
        if device is None:
            raise NotSupported(f"guest {guest.name}: no virtio-mem device")
        return stats.virtio_mem_section(device)

    def _xml_with_plugged_sizes(self, conn: Any, guest: GuestInfo) -> DomainXml:
        """The guest's XML with current virtio-mem plugged sizes. Without events (which
        drop the cached XML when a plugged size changes) a guest with a device has its
        XML fetched every time; the others keep the cached one."""
        cached = self.xml.cached(guest.uuid)
        fresh = cached is not None and bool(cached.virtio_mem_devices) and not self._events_active()
        return self.xml.get(conn, guest, fresh=fresh)
