"""The hypervisor interface: how MOM sees and changes the guests on a host.

One class per hypervisor (libvirt, vdsm, the simulator, later QMP); the guest
types it passes (GuestInfo, GuestData) are mom.core.guests'. Collection is
bulk first: the engine calls :meth:`HypervisorInterface.collect_all` once per tick
for all guests; the per-guest methods are the building blocks an interface may
use when its hypervisor has no bulk call.

Units follow the original MOM: memory in KiB, CPU quota and period in
microseconds.
"""

from __future__ import annotations

import enum
import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping
from typing import Any, ClassVar

from mom.core.disks import DiskLimitError, DiskLimits, find_disk
from mom.core.errors import MomError
from mom.core.guests import SECTIONS, GuestData, GuestInfo
from mom.core.host_paths import SYS_ROOT

__all__ = ["SECTIONS", "KSM_TUNABLES", "Capability", "GuestData", "GuestInfo", "GuestGone", "HypervisorError",
           "HypervisorInterface", "HypervisorUnavailable", "InterfaceUnavailable", "NotSupported",
           "check_virtio_mem_size", "checked_io_tunes", "disk_for", "record_section_error"]


class HypervisorError(MomError):
    """A hypervisor call failed."""


class HypervisorUnavailable(HypervisorError):
    """No connection to the hypervisor right now (it is down or restarting).

    The interface logs the outage itself, once, and reconnects in the
    background; the engine records these errors without logging them again.
    Raise it with one constant message per outage, so it is one fault.
    """


class GuestGone(HypervisorError):
    """The guest disappeared (shut down, migrated) while we talked about it."""


class NotSupported(HypervisorError):
    """This hypervisor (or this guest) cannot do what was asked."""


class InterfaceUnavailable(HypervisorError):
    """The configured interface exists in MOM's vocabulary but is not built yet."""


KSM_TUNABLES = ("run", "pages_to_scan", "sleep_millisecs", "merge_across_nodes")


def check_virtio_mem_size(guest_name: str, size_kib: int, block_kib: int, max_kib: int) -> None:
    """Refuse a virtio-mem requested size as QEMU does: outside [0, the device's region]
    or not a multiple of its block (HypervisorError, one line). Every interface's
    set_virtio_mem_requested asks this one rule, so the refusal reads the same on each;
    the VirtioMem controller is the one place that rounds and clamps. A block of 0
    (not known) checks the region only."""
    size = int(size_kib)
    refused = f"guest {guest_name}: virtio-mem requested size {size} KiB"
    if not 0 <= size <= max_kib:
        raise HypervisorError(f"{refused} is outside the device's region [0, {max_kib}] KiB")
    if block_kib and size % block_kib:
        raise HypervisorError(f"{refused} is not a multiple of its {block_kib} KiB block")


def record_section_error(data: GuestData, section: str, error: HypervisorError) -> None:
    """A section that failed for one guest: its message in ``data.errors``; when the
    guest or the interface lacks it (NotSupported) also in ``data.unsupported``,
    which the engine takes as normal for a section only optional collectors read."""
    data.errors[section] = str(error)
    if isinstance(error, NotSupported):
        data.unsupported.add(section)


def checked_io_tunes(guest: GuestInfo, tunes: Iterable[Any]) -> list[DiskLimits]:
    """set_io_tune's entries checked by the one rule (mom.core.disks), all before
    any is applied. Raises HypervisorError naming the guest."""
    try:
        return [DiskLimits.from_entry(tune) for tune in tunes]
    except DiskLimitError as e:
        raise HypervisorError(f"guest {guest.name}: {e}") from None


def disk_for(guest: GuestInfo, tune: DiskLimits, disks: Iterable[Any], ident: Any) -> Any:
    """The guest's disk a checked entry means (mom.core.disks.find_disk). Raises HypervisorError."""
    disk = find_disk(disks, tune.name, tune.path, ident)
    if disk is None:
        raise HypervisorError(f"guest {guest.name}: no disk {tune.name!r} ({tune.path!r})")
    return disk


class Capability(enum.Enum):
    """What an interface may do beyond the required calls. Callers ask
    :meth:`HypervisorInterface.supports` rather than probing for methods."""

    BULK_STATS = "bulk_stats"    # collect_all is one call for all guests
    EVENTS = "events"            # set_change_listener: guests starting and stopping are announced
    GUEST_AGENT = "guest_agent"  # qemu_agent_command reaches the QEMU guest agent


class HypervisorInterface(ABC):
    """Abstract base of every hypervisor interface.

    Subclasses implement at least :meth:`list_guests`, declare their optional
    ``capabilities`` and are built from their typed settings
    (:meth:`from_settings`; the registry in :mod:`mom.hypervisors` names them).
    Every method may raise :class:`HypervisorError`; :class:`GuestGone` when
    the guest no longer exists. Calls may block: the engine runs them on a
    small fixed pool with timeouts.
    """

    capabilities: ClassVar[frozenset[Capability]] = frozenset()
    # True when collect_all is one call for all guests (Capability.BULK_STATS); otherwise
    # the engine calls it per guest, in parallel and with a deadline, so one hung guest
    # cannot hold up the others. Derived from capabilities; setting it declares the capability.
    bulk: ClassVar[bool] = False
    # The interface's typed settings (mom.hypervisors.settings), read by from_config.
    settings_type: ClassVar[Any] = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.__dict__.get("bulk"):
            cls.capabilities = cls.capabilities | {Capability.BULK_STATS}
        cls.bulk = Capability.BULK_STATS in cls.capabilities

    def __init__(self, sys_root: str = SYS_ROOT) -> None:
        self.sys_root = sys_root

    @classmethod
    def from_settings(cls, settings: Any, clock: Any = None) -> HypervisorInterface:
        """Build from the interface's typed settings (mom.hypervisors.settings); clock:
        the daemon's. Nothing is dialled here. Raises a MomError with one line."""
        raise NotImplementedError(f"{cls.__name__} has no typed settings")

    @classmethod
    def from_config(cls, config: Any, clock: Any = None) -> HypervisorInterface:
        """Build from a Config: its typed settings (``settings_type``), then from_settings."""
        if cls.settings_type is None:
            raise NotImplementedError(f"{cls.__name__} has no typed settings")
        return cls.from_settings(cls.settings_type.from_config(config), clock)

    def supports(self, capability: Capability) -> bool:
        """Whether this interface has an optional capability."""
        return capability in self.capabilities

    # -- optional capabilities (see Capability) ------------------------------
    def set_change_listener(self, listener: Callable[[], None] | None) -> bool:
        """Capability.EVENTS: call ``listener`` when a guest starts or stops, so
        discovery runs at once. Returns whether events will be used; without the
        capability this does nothing and discovery polls."""
        return False

    def qemu_agent_command(self, guest: GuestInfo, command: str | dict[str, Any], timeout: int = 10) -> Any:
        """Capability.GUEST_AGENT: run a QEMU guest agent command, return its ``return``."""
        raise NotSupported("the QEMU guest agent")

    # -- discovery -----------------------------------------------------------
    @abstractmethod
    def list_guests(self) -> list[GuestInfo]:
        """Return the running guests."""

    def refresh(self) -> None:  # noqa: B027 - an optional hook: nothing to do by default
        """Called once before each collection round, before the per-guest calls:
        the place to refresh a cache (the simulator advances its model here)."""

    def guest_added(self, guest: GuestInfo, monitor_interval: float) -> None:  # noqa: B027 - optional hook
        """Called once when a guest is first seen (all new guests in one pool call)."""

    # -- per-guest collection ----------------------------------------------------
    def guest_memory_stats(self, guest: GuestInfo) -> dict[str, Any]:
        """Memory statistics as seen by the balloon driver (see GuestData.memory)."""
        raise NotSupported("memory statistics")

    def guest_balloon_info(self, guest: GuestInfo) -> dict[str, Any]:
        """balloon_cur, balloon_max, balloon_min in KiB."""
        raise NotSupported("balloon information")

    def guest_cpu_tune(self, guest: GuestInfo) -> dict[str, Any]:
        """vcpu_quota, vcpu_period, vcpu_user_limit, vcpu_count."""
        raise NotSupported("CPU tuning information")

    def guest_io_tune(self, guest: GuestInfo) -> list[dict[str, Any]] | None:
        """IO tune entries (see GuestData.io_tune), None when the guest has none."""
        raise NotSupported("IO tuning information")

    def guest_virtio_mem(self, guest: GuestInfo) -> dict[str, Any]:
        """The guest's virtio-mem device (see GuestData.virtio_mem): virtio_mem_size
        (plugged), virtio_mem_requested, virtio_mem_block, virtio_mem_max (its
        region), all KiB. Raises NotSupported when the guest has no device."""
        raise NotSupported("virtio-mem")

    def collect_all(self, guests: Iterable[GuestInfo], sections: Iterable[str]) -> dict[str, GuestData]:
        """Collect the asked sections for all guests: {uuid: GuestData}.

        This default calls the per-guest methods; interfaces with a bulk call
        override it. A failing section is recorded in GuestData.errors; a guest
        that is gone is left out.
        """
        getters = {
            "memory": self.guest_memory_stats,
            "balloon": self.guest_balloon_info,
            "cpu_tune": self.guest_cpu_tune,
            "io_tune": self.guest_io_tune,
            "virtio_mem": self.guest_virtio_mem,
        }
        wanted = [s for s in SECTIONS if s in set(sections)]
        result: dict[str, GuestData] = {}
        for guest in guests:
            data = GuestData()
            try:
                for section in wanted:
                    try:
                        setattr(data, section, getters[section](guest))
                    except GuestGone:
                        raise
                    except HypervisorError as e:
                        record_section_error(data, section, e)
            except GuestGone:
                continue
            result[guest.uuid] = data
        return result

    # -- control -------------------------------------------------------------------
    def set_balloon_target(self, guest: GuestInfo, target_kib: int) -> None:
        raise NotSupported("balloon control")

    def set_virtio_mem_requested(self, guest: GuestInfo, size_kib: int) -> None:
        """Ask the guest's virtio-mem device for size_kib plugged (the caller rounds
        it to the block size and keeps it within [0, virtio_mem_max]). Raises
        NotSupported when the guest has no device."""
        raise NotSupported("virtio-mem control")

    def set_cpu_tune(self, guest: GuestInfo, quota: int | None = None, period: int | None = None) -> None:
        raise NotSupported("CPU tuning")

    def set_io_tune(self, guest: GuestInfo, tunes: list[dict[str, Any]]) -> None:
        """Apply IO limits; each tune is {name, path, current: {...}}."""
        raise NotSupported("IO tuning")

    def set_ksm_tune(self, params: Mapping[str, int]) -> None:
        """Write KSM tunables (keys from KSM_TUNABLES). Default: the host's sysfs
        under ``sys_root``; vdsm overrides it with its RPC."""
        for key, value in params.items():
            if key not in KSM_TUNABLES:
                raise NotSupported(f"KSM tunable {key}")
            path = os.path.join(self.sys_root, "kernel/mm/ksm", key)
            try:
                with open(path, "w") as f:
                    f.write(f"{int(value)}\n")
            except OSError as e:
                raise HypervisorError(f"cannot write {path}: {e.strerror}") from None

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""
