"""The balloon statistics period (the guest monitor interval) on every guest.

QEMU reports a guest's balloon statistics only with a period set, and a
restarted libvirtd keeps its guests running, so the period is set once per
domain per connection: in :meth:`StatsPeriod.set_missing`, called from the
interface's refresh() once per collection round, on each known domain that
lacks it. A failure is one warning per kind (libvirt error code), naming how
many guests it hit, not one per guest.
"""

from __future__ import annotations

import libvirt

from mom.core.faults import OncePerKind
from mom.hypervisors.base import GuestGone
from mom.hypervisors.libvirt import stats
from mom.hypervisors.libvirt.connection import ConnectionLost, LibvirtConnection
from mom.hypervisors.libvirt.domains import Domains, running


class StatsPeriod:
    """Sets ``period`` seconds on each domain once per connection."""

    def __init__(self, connection: LibvirtConnection, domains: Domains, period: float | None) -> None:
        self.connection = connection
        self.domains = domains
        self.period = None if period is None else max(1, round(period))
        self._done: set[str] = set()  # uuids whose period is set on this connection
        self._kinds = OncePerKind(stats.log)  # libvirt error codes warned about

    def clear(self) -> None:
        """A new connection: set the period on every domain again."""
        self._done.clear()

    def forget(self, uuid: str) -> None:
        self._done.discard(uuid)

    def keep_only(self, uuids: set[str]) -> None:
        self._done &= uuids

    def set_missing(self) -> None:
        """Set the period on every known domain that lacks it on this connection."""
        conn = self.connection.ensure()
        if self.period is None:
            return
        with self.connection.lock:
            if self.connection.conn is not conn:
                return
            missing = [(uuid, dom) for uuid, dom in self.domains.by_uuid.items() if uuid not in self._done]
        failed: dict[int, list[tuple[str, str]]] = {}  # libvirt error code -> [(guest, message)]
        try:
            for uuid, dom in missing:
                try:
                    dom.setMemoryStatsPeriod(self.period, libvirt.VIR_DOMAIN_AFFECT_LIVE)
                except libvirt.libvirtError as e:
                    try:
                        name = dom.name()
                    except libvirt.libvirtError:
                        name = uuid
                    err = self.connection.error(e, f"guest {name}", conn)
                    if isinstance(err, ConnectionLost):
                        raise err from None
                    if not isinstance(err, GuestGone) and running(dom):
                        failed.setdefault(e.get_error_code(), []).append((name, e.get_error_message() or str(e)))
                with self.connection.lock:
                    if self.connection.conn is conn:
                        self._done.add(uuid)
        finally:
            stats.report_failed_round(self._kinds, "cannot set the balloon statistics period", failed)
