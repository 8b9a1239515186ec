"""SimHypervisor: the hypervisor interface over the simulated host (mom.sim).

Discovery (list_guests) and refresh(), which starts each collection round, advance the model to the clock's
time, so with a FastClock the whole system runs in accelerated simulated time.
The simulator keeps a /proc and /sys tree (``proc_root``, ``sys_root``) for
the host collectors; KSM tunables reach it through the default sysfs writer.

Fault injection for tests: :meth:`SimHypervisor.inject_fault` makes one
guest's calls raise or hang; :meth:`SimHypervisor.vanish` destroys a guest.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mom.core.clock import Clock
from mom.hypervisors.base import (
    GuestGone,
    GuestInfo,
    HypervisorError,
    HypervisorInterface,
    NotSupported,
    check_virtio_mem_size,
    checked_io_tunes,
    disk_for,
)
from mom.hypervisors.settings import SimSettings
from mom.sim.model import SimGuest, SimModel
from mom.sim.proctree import ProcTree, TreeClosed
from mom.sim.scenario import Scenario, default_scenario, load_scenario

# Limits libvirt enforces for the CFS bandwidth of a vCPU (µs).
QUOTA_MIN, QUOTA_MAX = 1000, 18446744073709551
PERIOD_MIN, PERIOD_MAX = 1000, 1000000
KSM_LIMITS = {"run": 3, "merge_across_nodes": 2, "sleep_millisecs": 2**32, "pages_to_scan": 2**32}


def _disk_ident(disk: Any) -> tuple[str, str | None]:
    return disk.name, disk.path


@dataclass
class Fault:
    kind: str  # "raise" or "hang"
    message: str = "injected fault"
    seconds: float = 3600.0  # real seconds a hang lasts


class SimHypervisor(HypervisorInterface):
    """A HypervisorInterface backed by a SimModel and its proc/sys tree."""

    settings_type = SimSettings

    def __init__(self, scenario: Scenario | str | os.PathLike[str] | None = None, *,
                 seed: int | None = None, clock: Clock | None = None,
                 tree_dir: str | None = None) -> None:
        """scenario: a Scenario, a scenario file path, or None for the built-in
        default. seed: overrides the scenario's seed. clock: time source (real
        time by default). tree_dir: where the proc/sys tree lives; a temporary
        directory removed by close() when None (see ProcTree.temporary: it also
        removes the trees of simulators that were killed).

        Raises ScenarioError for a bad scenario file, OSError when the tree
        cannot be written."""
        if scenario is None:
            scenario = default_scenario()
        elif not isinstance(scenario, Scenario):
            scenario = load_scenario(scenario)
        self.clock = clock or Clock()
        self.tree = ProcTree.temporary() if tree_dir is None else ProcTree(tree_dir)
        super().__init__(sys_root=self.tree.sys_root)
        try:
            self.model = SimModel(scenario, seed=seed, start=self.clock.time(), tree=self.tree)
        except BaseException:
            self.tree.close()  # a temporary tree must not outlive a failed start
            raise
        self._faults: dict[str, Fault] = {}
        self._faults_lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: SimSettings, clock: Clock | None = None) -> SimHypervisor:
        """The daemon's simulator, on the daemon's clock. Raises ScenarioError for a
        bad scenario, HypervisorError when the tree cannot be written."""
        try:
            return cls(settings.scenario, seed=settings.seed, clock=clock, tree_dir=settings.tree_dir)
        except OSError as e:
            raise HypervisorError(f"simulator tree: {e.strerror or e}") from None

    # -- tree ------------------------------------------------------------------
    @property
    def root(self) -> str:
        return self.tree.root

    @property
    def proc_root(self) -> str:
        return self.tree.proc_root

    @property
    def scenario(self) -> Scenario:
        return self.model.scenario

    def sync(self) -> None:
        """Advance the model to the clock's time; raises HypervisorError if the tree fails."""
        try:
            self.model.advance_to(self.clock.time())
        except OSError as e:
            raise HypervisorError(f"simulator tree {self.root}: {e.strerror or e}") from None

    # -- faults ------------------------------------------------------------------
    def inject_fault(self, name: str, kind: str | None, *, message: str = "injected fault",
                     seconds: float = 3600.0) -> None:
        """Make calls about guest ``name`` raise HypervisorError(message) (kind
        "raise"), block for ``seconds`` real seconds then raise (kind "hang"),
        or behave again (kind None). Raises ValueError for another kind."""
        if kind not in (None, "raise", "hang"):
            raise ValueError(f"unknown fault kind {kind!r}")
        with self._faults_lock:
            if kind is None:
                self._faults.pop(name, None)
            else:
                self._faults[name] = Fault(kind, message, seconds)

    def vanish(self, name: str) -> None:
        """Destroy guest ``name`` now; later calls about it raise GuestGone. Raises KeyError."""
        self.model.vanish(name)

    def _guest(self, info: GuestInfo) -> SimGuest:
        with self._faults_lock:
            fault = self._faults.get(info.name)
        if fault is not None:
            if fault.kind == "hang":
                time.sleep(fault.seconds)  # outside every lock, so other guests go on
            raise HypervisorError(f"guest {info.name}: {fault.message}")
        with self.model.lock:
            g = self.model.guests.get(info.name)  # names are unique in a scenario
            if g is not None and g.spec.uuid == info.uuid:
                if not g.running:
                    raise GuestGone(f"guest {info.name} ({info.uuid}) is not running")
                return g
        raise GuestGone(f"no guest {info.name} ({info.uuid})")

    # -- discovery and collection ----------------------------------------------------
    def list_guests(self) -> list[GuestInfo]:
        """The running guests after advancing the model to now."""
        self.sync()
        with self.model.lock:
            return [GuestInfo(uuid=g.spec.uuid, name=g.name, pid=g.pid) for g in self.model.running_guests()]

    def refresh(self) -> None:
        """Advance the model to now (once per collection round: the per-guest
        collect_all calls that follow do not advance it, so one round sees one
        consistent moment and the tree is written once)."""
        self.sync()

    def guest_memory_stats(self, guest: GuestInfo) -> dict[str, Any]:
        """What the guest's balloon driver last reported: stale when the guest
        stopped answering (scenario stats_stop), an error when it never reports."""
        g = self._guest(guest)
        with self.model.lock:
            stats = g.memory_stats()
        if stats is None:
            raise HypervisorError(
                f"guest {guest.name}: the guest reports no balloon statistics "
                f"(no virtio-balloon driver in the guest, or no statistics period set)")
        return stats

    def guest_balloon_info(self, guest: GuestInfo) -> dict[str, Any]:
        """Balloon sizes and whether the device reports free pages (a property of
        the device, known whatever the guest's driver does)."""
        g = self._guest(guest)
        with self.model.lock:
            return {"balloon_cur": int(g.balloon_cur), "balloon_max": g.max_kib,
                    "balloon_min": g.spec.min_mib * 1024,
                    "balloon_free_page_reporting": int(g.spec.free_page_reporting)}

    def guest_virtio_mem(self, guest: GuestInfo) -> dict[str, Any]:
        """The guest's virtio-mem device, as QEMU's size, requested-size, block-size
        and memdev size; NotSupported when the scenario gives it none."""
        g = self._guest(guest)
        vmem = g.spec.virtio_mem
        if vmem is None:
            raise NotSupported(f"guest {guest.name} has no virtio-mem device")
        with self.model.lock:
            return {"virtio_mem_size": int(g.vmem_size), "virtio_mem_requested": int(g.vmem_requested),
                    "virtio_mem_block": vmem.block_kib, "virtio_mem_max": vmem.max_kib}

    def guest_cpu_tune(self, guest: GuestInfo) -> dict[str, Any]:
        g = self._guest(guest)
        with self.model.lock:
            return {"vcpu_quota": g.vcpu_quota, "vcpu_period": g.vcpu_period,
                    "vcpu_user_limit": g.spec.vcpu_user_limit, "vcpu_count": g.spec.vcpus}

    def guest_io_tune(self, guest: GuestInfo) -> list[dict[str, Any]] | None:
        g = self._guest(guest)
        with self.model.lock:
            return [d.as_dict() for d in g.disks]

    # -- control ---------------------------------------------------------------------
    def set_balloon_target(self, guest: GuestInfo, target_kib: int) -> None:
        """Start moving the balloon to target_kib, clamped to [0, balloon_max]."""
        g = self._guest(guest)
        with self.model.lock:
            g.set_balloon_target(target_kib)

    def set_virtio_mem_requested(self, guest: GuestInfo, size_kib: int) -> None:
        """Set the device's requested size; the guest plugs or unplugs toward it.
        Like QEMU, refuses a size that is not a multiple of the block size or lies
        outside [0, the region] (HypervisorError), and NotSupported without a device."""
        g = self._guest(guest)
        vmem = g.spec.virtio_mem
        if vmem is None:
            raise NotSupported(f"guest {guest.name} has no virtio-mem device")
        size = int(size_kib)
        check_virtio_mem_size(guest.name, size, vmem.block_kib, vmem.max_kib)
        with self.model.lock:
            g.set_vmem_requested(size)

    def set_cpu_tune(self, guest: GuestInfo, quota: int | None = None, period: int | None = None) -> None:
        """Set vCPU quota/period (µs; quota -1 = unlimited); None keeps a value.
        Raises HypervisorError for values libvirt would reject."""
        if quota is not None and quota != -1 and not QUOTA_MIN <= int(quota) <= QUOTA_MAX:
            raise HypervisorError(f"vcpu_quota {quota} out of range [{QUOTA_MIN}, {QUOTA_MAX}] or -1")
        if period is not None and not PERIOD_MIN <= int(period) <= PERIOD_MAX:
            raise HypervisorError(f"vcpu_period {period} out of range [{PERIOD_MIN}, {PERIOD_MAX}]")
        g = self._guest(guest)
        with self.model.lock:
            if quota is not None:
                g.vcpu_quota = int(quota)
            if period is not None:
                g.vcpu_period = int(period)

    def set_io_tune(self, guest: GuestInfo, tunes: list[dict[str, Any]]) -> None:
        """Apply each tune's ``current`` (or vdsm-style ``ioTune``) limits to the
        disk with that path (or name). Raises HypervisorError for an unknown
        disk or a bad value; nothing is applied then."""
        g = self._guest(guest)
        checked = checked_io_tunes(guest, tunes)
        with self.model.lock:
            updates = [(disk_for(guest, tune, g.disks, _disk_ident), tune.limits) for tune in checked]
            for disk, limits in updates:
                disk.current.update(limits)

    def set_ksm_tune(self, params: Mapping[str, int]) -> None:
        """Check values like vdsm's supervdsm does, then write sysfs in the tree."""
        for key, value in params.items():
            limit = KSM_LIMITS.get(key)
            if limit is not None and not 0 <= int(value) < limit:
                raise HypervisorError(f"invalid KSM value {key}={value}")
        try:
            with self.tree.writing():  # not into a tree being removed (it would re-create the file)
                super().set_ksm_tune(params)
        except TreeClosed as e:
            raise HypervisorError(f"simulator tree {self.root}: {e.strerror}") from None

    def close(self) -> None:
        """Stop writing the tree; remove it when it is temporary."""
        self.tree.close()
