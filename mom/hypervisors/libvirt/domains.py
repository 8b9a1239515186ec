"""What the libvirt interface keeps per domain on the current connection, and
calls on one domain.

- :class:`Domains`: discovery (one ``listAllDomains(ACTIVE)`` call; name and
  UUID are local accessors of the returned objects), the domain objects by
  UUID, the QEMU pids (from libvirt's pid file ``DIR/NAME.pid``, checked
  against ``/proc/PID/cmdline`` holding the domain's UUID; no ``ps`` scan),
  and :meth:`Domains.call`, which turns a libvirt error into MOM's.
- :class:`XmlCache`: each domain's parsed XML (:mod:`.domain_xml`), reused for
  ``xml_ttl`` seconds with jitter (a large host does not fetch every XML in
  the same tick) and dropped after a lifecycle, metadata, tunable or memory
  device size event, and after MOM changes the domain itself.

Both belong to one connection: a new connection starts them empty (libvirtd
may have restarted). They are guarded by the connection's lock.
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable
from typing import Any

import libvirt

from mom.core.host_paths import PROC_ROOT
from mom.hypervisors.base import GuestGone, GuestInfo, HypervisorError
from mom.hypervisors.libvirt.connection import GONE_CODES, LibvirtConnection
from mom.hypervisors.libvirt.domain_xml import DomainXml, parse_domain_xml


def running(dom: Any) -> bool:
    """Whether the domain still runs; True when that cannot be told."""
    try:
        return bool(dom.isActive())
    except libvirt.libvirtError as e:
        return e.get_error_code() not in GONE_CODES


class Domains:
    """The current connection's domain objects and QEMU pids."""

    def __init__(self, connection: LibvirtConnection, proc_root: str = PROC_ROOT) -> None:
        self.connection = connection
        self.proc_root = proc_root
        self.pid_dir: str | None = None  # where NAME.pid files are (None: no local pid files)
        self.by_uuid: dict[str, Any] = {}  # uuid -> virDomain of the current connection
        self._pids: dict[str, tuple[int, int | None]] = {}  # uuid -> (domain id, pid)

    def reset(self) -> None:
        """The connection changed: its domain objects are of no use any more."""
        self.by_uuid.clear()

    def list_guests(self, prune: Callable[[set[str]], None] = lambda running: None) -> list[GuestInfo]:
        """The running domains, in one libvirt call. Raises HypervisorError.
        prune(their uuids) is called with the lock held, for the caches of other
        modules to forget the domains that stopped."""
        conn = self.connection.ensure()
        try:
            doms = conn.listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE)
        except libvirt.libvirtError as e:
            raise self.connection.error(e, "listing domains", conn) from None
        guests: list[GuestInfo] = []
        found: dict[str, Any] = {}
        for dom in doms:
            try:
                uuid, name, dom_id = dom.UUIDString(), dom.name(), dom.ID()
            except libvirt.libvirtError:
                continue  # gone between the list and now
            found[uuid] = dom
            guests.append(GuestInfo(uuid=uuid, name=name, pid=self._pid(uuid, name, dom_id)))
        with self.connection.lock:
            if self.connection.conn is conn:
                self.by_uuid = found
                for uuid in [u for u in self._pids if u not in found]:
                    del self._pids[uuid]
                prune(set(found))
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

    def lookup(self, conn: Any, guest: GuestInfo) -> Any:
        """The guest's virDomain on ``conn`` (cached). Raises HypervisorError (GuestGone)."""
        dom = self.by_uuid.get(guest.uuid)
        if dom is not None:
            return dom
        try:
            dom = conn.lookupByUUIDString(guest.uuid)
        except libvirt.libvirtError as e:
            raise self.connection.error(e, f"guest {guest.name}", conn) from None
        self.by_uuid[guest.uuid] = dom
        return dom

    def call(self, conn: Any, guest: GuestInfo, what: str, fn: Callable[[Any], Any]) -> Any:
        """fn(the guest's virDomain), a libvirt error turned into a HypervisorError:
        GuestGone also when the call failed otherwise and the domain no longer runs."""
        dom = self.lookup(conn, guest)
        try:
            return fn(dom)
        except libvirt.libvirtError as e:
            err = self.connection.error(e, f"guest {guest.name}: {what}", conn)
        if type(err) is HypervisorError and not running(dom):
            # QEMU went away during the call (e.g. "Unable to read from monitor"): the
            # guest is gone, which is normal under churn, not an error of this guest.
            err = GuestGone(str(err))
        raise err

    def forget(self, uuid: str) -> None:
        """The domain stopped or was undefined (an event)."""
        self.by_uuid.pop(uuid, None)


class XmlCache:
    """Each domain's parsed XML, reused for ``ttl`` seconds (1 to 1.5 times, at random)."""

    def __init__(self, domains: Domains, ttl: float, monotonic: Callable[[], float]) -> None:
        self.domains = domains
        self.ttl = ttl
        self._now = monotonic
        self._parsed: dict[str, tuple[float, DomainXml]] = {}  # uuid -> (expiry, parsed XML)

    def get(self, conn: Any, guest: GuestInfo, fresh: bool = False) -> DomainXml:
        """The guest's parsed XML, fetched when not cached, expired or ``fresh`` is asked
        for. Raises HypervisorError."""
        now = self._now()
        cached = self._parsed.get(guest.uuid)
        if cached is not None and cached[0] > now and not fresh:
            return cached[1]
        text = self.domains.call(conn, guest, "XMLDesc", lambda d: d.XMLDesc(0))
        try:
            parsed = parse_domain_xml(text)
        except ValueError as e:
            raise HypervisorError(f"guest {guest.name}: {e}") from None
        self._parsed[guest.uuid] = (now + self.ttl * (1 + 0.5 * random.random()), parsed)
        return parsed

    def cached(self, uuid: str) -> DomainXml | None:
        """The domain's parsed XML if cached (expired or not), without fetching it."""
        entry = self._parsed.get(uuid)
        return entry[1] if entry is not None else None

    def drop(self, uuid: str) -> None:
        """Fetch this domain's XML again next time (it changed)."""
        self._parsed.pop(uuid, None)

    def keep_only(self, uuids: set[str]) -> None:
        """Forget the domains that are not running any more."""
        for uuid in [u for u in self._parsed if u not in uuids]:
            del self._parsed[uuid]

    def clear(self) -> None:
        self._parsed.clear()
