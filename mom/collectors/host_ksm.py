"""HostKSM: Kernel Samepage Merging state from {sys_root}/kernel/mm/ksm.

Fields:

- ksm_run: 0 stopped, 1 running, 2 stopped and unmerged all pages.
- ksm_pages_to_scan: pages ksmd scans per wake-up.
- ksm_sleep_millisecs: ksmd's sleep between scans (ms).
- ksm_pages_shared: shared pages in use (each backs many sites).
- ksm_pages_sharing: sites sharing those pages (how much is saved).
- ksm_pages_unshared: pages scanned, unique, still checked for merging.
- ksm_pages_volatile: pages changing too fast to be merged.
- ksm_full_scans: completed scans of all mergeable areas.
- ksm_merge_across_nodes (optional; only on NUMA-capable kernels): 1 when pages
  from different NUMA nodes may be merged.
- ksm_shareable: estimate of memory offered to KSM (KiB): the sum of the
  virtual sizes (VmSize) of the guests' QEMU processes, found through the
  hypervisor's guest list; 0 without a hypervisor.
- ksmd_cpu_usage: CPU used by the ksmd kernel thread since the previous
  collection, in percent of one CPU over the collection interval
  (``ctx.interval``); 0 on the first collection or when no ksmd runs.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from mom.collectors._common import read_pid_stat, stat_field
from mom.collectors.base import CollectionError, Collector, CollectorContext, GuestSubject, register
from mom.hypervisors.base import HypervisorError

KSM_KEYS = (
    "run", "pages_to_scan", "sleep_millisecs", "pages_shared", "pages_sharing",
    "pages_unshared", "pages_volatile", "full_scans",
)
OPTIONAL_KSM_KEYS = ("merge_across_nodes",)


@register
class HostKSM(Collector):
    """KSM tunables and counters, ksmd's CPU use and the shareable memory estimate."""

    name = "HostKSM"
    scope = "host"
    mandatory = frozenset({f"ksm_{k}" for k in KSM_KEYS} | {"ksm_shareable", "ksmd_cpu_usage"})
    optional = frozenset(f"ksm_{k}" for k in OPTIONAL_KSM_KEYS)

    def __init__(self, ctx: CollectorContext, settings: Mapping[str, str] | None = None) -> None:
        super().__init__(ctx, settings)
        self._ksmd_pid: int | None = None
        self._last_jiffies: int | None = None
        self.clock_ticks = os.sysconf("SC_CLK_TCK")

    def collect(self, subject: GuestSubject | None = None) -> dict[str, Any]:
        data: dict[str, Any] = {}
        for key in KSM_KEYS:
            data[f"ksm_{key}"] = self._read_sysfs_int(key)
        for key in OPTIONAL_KSM_KEYS:
            if os.path.exists(self.sys_path("kernel/mm/ksm", key)):
                data[f"ksm_{key}"] = self._read_sysfs_int(key)
        data["ksm_shareable"] = self._shareable_kib()
        data["ksmd_cpu_usage"] = self._ksmd_cpu_usage()
        return data

    # -- sysfs ---------------------------------------------------------------
    def _read_sysfs_int(self, key: str) -> int:
        path = self.sys_path("kernel/mm/ksm", key)
        try:
            with open(path) as f:
                text = f.read().strip()
        except OSError as e:
            raise CollectionError(f"cannot read {path}: {e.strerror}") from None
        try:
            return int(text)
        except ValueError:
            raise CollectionError(f"{path}: not a number: {text!r}") from None

    # -- ksm_shareable -------------------------------------------------------
    def _shareable_kib(self) -> int:
        if self.ctx.guests is not None:
            guests = self.ctx.guests()  # the daemon's view: no hypervisor call on the scheduler thread
        elif self.ctx.hypervisor is None:
            return 0
        else:
            try:
                guests = self.ctx.hypervisor.list_guests()
            except HypervisorError as e:
                raise CollectionError(f"HostKSM: cannot list guests for ksm_shareable: {e}") from None
        total = 0
        for guest in guests:
            if guest.pid is None:
                continue
            total += self._vm_size_kib(guest.pid)
        return total

    def _vm_size_kib(self, pid: int) -> int:
        path = self.proc_path(str(pid), "status")
        try:
            with open(path) as f:
                lines = f.read().splitlines()
        except FileNotFoundError:
            return 0  # the guest exited since it was listed
        except OSError as e:
            raise CollectionError(f"cannot read {path}: {e.strerror}") from None
        for line in lines:
            if line.startswith("VmSize:"):
                parts = line.split()
                try:
                    return int(parts[1])
                except (IndexError, ValueError):
                    raise CollectionError(f"{path}: malformed line {line.strip()!r}") from None
        return 0  # zombies have no VmSize line

    # -- ksmd_cpu_usage ------------------------------------------------------
    def _is_ksmd(self, pid: int) -> bool:
        try:
            with open(self.proc_path(str(pid), "comm")) as f:
                return f.read().strip() == "ksmd"
        except OSError:
            return False

    def _find_ksmd(self) -> int | None:
        if self._ksmd_pid is not None and self._is_ksmd(self._ksmd_pid):
            return self._ksmd_pid
        try:
            entries = os.listdir(self.ctx.proc_root)
        except OSError as e:
            raise CollectionError(f"cannot list {self.ctx.proc_root}: {e.strerror}") from None
        # Kernel threads have low pids, so the search usually ends early.
        for entry in sorted((e for e in entries if e.isdigit()), key=int):
            if self._is_ksmd(int(entry)):
                return int(entry)
        return None

    def _ksmd_cpu_usage(self) -> float:
        pid = self._find_ksmd()
        if pid != self._ksmd_pid:
            self._ksmd_pid = pid
            self._last_jiffies = None
        if pid is None:
            return 0.0
        path = self.proc_path(str(pid), "stat")
        rest = read_pid_stat(path)
        jiffies = stat_field(rest, 14, path) + stat_field(rest, 15, path)  # utime + stime
        last, self._last_jiffies = self._last_jiffies, jiffies
        if last is None or self.ctx.interval <= 0:
            return 0.0
        used = max(0, jiffies - last)
        return 100.0 * used / (self.clock_ticks * self.ctx.interval)
