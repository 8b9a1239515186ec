"""The simulated host and guests, advanced in fixed steps of simulated time.

Memory bookkeeping (KiB):

- A guest sees ``balloon_cur`` of memory, minus a small kernel reserve. Its
  workload wants ``demand``; what does not fit goes to the guest's swap. The
  page cache fills a fraction of the remaining free memory and is dropped first
  when the balloon inflates or demand grows.
- The host backs what a guest touched: ``min(balloon, reserve + resident + cache)``.
  KSM merges part of it. When RAM runs out the host drops its own page cache,
  then swaps.

Each step draws random numbers in a fixed order from per-guest generators
seeded from the scenario seed, so the state at a given simulated time depends
only on the seed and on the controls applied.
"""

from __future__ import annotations

import math
import random
import threading
from dataclasses import dataclass, field
from typing import Any

from mom.sim.ksm import CLK_TCK, KsmState
from mom.sim.proctree import KSM_DIR, KSM_STATS, ProcTree, render_cpuinfo, render_meminfo, \
    render_pid_stat, render_pid_status, render_pressure, render_vmstat
from mom.sim.scenario import IO_KEYS, GuestSpec, Scenario
from mom.sim.workloads import MIB, Workload, build_workload

BALLOON_RATE = 512 * MIB     # KiB/s the balloon moves: ~1 GiB in 2 s
SWAPIN_RATE = 32 * MIB       # KiB/s swapped back in once memory is there again
CACHE_FILL_RATE = 8 * MIB    # KiB/s the guest page cache grows or shrinks toward its share
HOST_SWAPIN_RATE = 64 * MIB
HOST_BUFFERS = 32 * MIB
QEMU_OVERHEAD = 64 * MIB     # virtual size a qemu process has beyond guest RAM
KSMD_PID = 57
FIRST_GUEST_PID = 4001


@dataclass
class IoDisk:
    name: str
    path: str
    guaranteed: dict[str, int]
    maximum: dict[str, int]
    current: dict[str, int]

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "path": self.path, "guaranteed": dict(self.guaranteed),
                "maximum": dict(self.maximum), "current": dict(self.current)}


@dataclass
class SimGuest:
    """One guest's state; sizes in KiB, counters cumulative."""

    spec: GuestSpec
    workload: Workload
    pid: int
    balloon_cur: float = 0.0
    balloon_target: float = 0.0
    demand: float = 0.0
    resident: float = 0.0
    cache: float = 0.0
    swap_used: float = 0.0
    swap_in: float = 0.0
    swap_out: float = 0.0
    major_fault: float = 0.0
    minor_fault: float = 0.0
    cpu_ticks: float = 0.0
    vcpu_quota: int = -1
    vcpu_period: int = 100000
    disks: list[IoDisk] = field(default_factory=list)
    running: bool = False
    vanished: bool = False

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def max_kib(self) -> int:
        return self.spec.max_mib * MIB

    @property
    def reserve(self) -> float:
        """Memory the guest kernel keeps for itself."""
        return 0.04 * self.max_kib

    @property
    def footprint(self) -> float:
        """Host memory backing this guest (before KSM)."""
        if not self.running:
            return 0.0
        return min(self.balloon_cur, self.reserve + self.resident + self.cache)

    def set_balloon_target(self, kib: float) -> int:
        """Clamp to [0, max] and return the target taken."""
        self.balloon_target = min(float(self.max_kib), max(0.0, float(kib)))
        return int(self.balloon_target)

    def boot(self, t: float) -> None:
        """Start at scenario time t with the workload's demand and a half-filled cache."""
        size = float((self.spec.balloon_mib or self.spec.max_mib) * MIB)
        self.balloon_cur = self.balloon_target = size
        self.running = True
        self.step(t, 0.0)
        self.cache = 0.5 * self.spec.cache_fraction * max(0.0, size - self.reserve - self.resident)

    def step(self, t: float, dt: float) -> None:
        """Advance dt seconds at scenario time t."""
        diff = self.balloon_target - self.balloon_cur
        self.balloon_cur += max(-BALLOON_RATE * dt, min(BALLOON_RATE * dt, diff))
        usable = max(0.0, self.balloon_cur - self.reserve)
        swap_total = self.spec.swap_mib * MIB
        previous = self.demand
        self.demand = self.workload.demand(t, dt)
        need = min(swap_total, max(0.0, self.demand - usable))
        if need > self.swap_used:
            self.swap_out += need - self.swap_used
            self.swap_used = need
        else:
            back = min(self.swap_used - need, SWAPIN_RATE * dt)
            self.swap_in += back
            self.major_fault += back / 4
            self.swap_used -= back
        # Memory the programs freed also frees its swap slots.
        self.swap_used = min(self.swap_used, self.demand)
        self.resident = min(usable, self.demand - self.swap_used)
        room = usable - self.resident
        target = self.spec.cache_fraction * room
        if self.cache > room:
            self.cache = room
        elif self.cache < target:
            self.cache = min(target, self.cache + CACHE_FILL_RATE * dt)
        else:
            self.cache = max(target, self.cache - CACHE_FILL_RATE * dt)
        self.minor_fault += abs(self.demand - previous) / 4 + 50 * dt
        self.major_fault += 0.5 * dt
        self.cpu_ticks += dt * CLK_TCK * 0.05 * self.spec.vcpus

    def memory_stats(self) -> dict[str, int]:
        """The balloon driver's view (KiB, counts)."""
        unused = max(0.0, self.balloon_cur - self.reserve - self.resident - self.cache)
        return {
            "mem_available": int(self.balloon_cur),
            "mem_unused": int(unused),
            "mem_free": int(unused + self.cache),
            "mem_usable": int(unused + self.cache),
            "disk_caches": int(self.cache),
            "major_fault": int(self.major_fault),
            "minor_fault": int(self.minor_fault),
            "swap_in": int(self.swap_in),
            "swap_out": int(self.swap_out),
            "swap_total": self.spec.swap_mib * MIB,
            "swap_usage": int(self.swap_used),
        }


@dataclass
class Psi:
    """Exponentially averaged stall percentages and cumulative stall time (µs)."""

    avg: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0])
    total_us: float = 0.0

    def step(self, share: float, dt: float) -> None:
        for i, window in enumerate((10.0, 60.0, 300.0)):
            k = math.exp(-dt / window)
            self.avg[i] = self.avg[i] * k + 100.0 * share * (1.0 - k)
        self.total_us += share * dt * 1e6

    def values(self) -> tuple[float, float, float, int]:
        return (self.avg[0], self.avg[1], self.avg[2], int(self.total_us))


class SimModel:
    """The host and its guests; advance_to() moves them through simulated time."""

    def __init__(self, scenario: Scenario, seed: int | None = None, start: float = 0.0,
                 tree: ProcTree | None = None) -> None:
        self.scenario = scenario
        self.seed = scenario.seed if seed is None else seed
        self.dt = scenario.step
        self.t0 = self.now = float(start)
        self.steps = 0
        self.tree = tree
        self.lock = threading.RLock()
        spec = scenario.host
        self.mem_total = spec.memory_mib * MIB
        self.swap_total = spec.swap_mib * MIB
        self.min_free = max(16 * MIB, 0.008 * self.mem_total)
        self.host_cache = float(spec.cache_mib * MIB)
        self.host_swap = 0.0
        self.pswpin = self.pswpout = 0.0
        self.pgfault = self.pgmajfault = 0.0
        self.psi_some, self.psi_full = Psi(), Psi()
        k = scenario.ksm
        self.ksm = KsmState(run=k.run, pages_to_scan=k.pages_to_scan,
                            sleep_millisecs=k.sleep_millisecs, merge_across_nodes=k.merge_across_nodes)
        self.guests: dict[str, SimGuest] = {}
        for i, g in enumerate(scenario.guests):
            # A str seed is hashed with SHA-512, so it does not depend on PYTHONHASHSEED.
            rng = random.Random(f"{self.seed}/{g.name}")
            guest = SimGuest(spec=g, workload=build_workload(g.workload, rng, g.max_mib * MIB),
                             pid=FIRST_GUEST_PID + i, vcpu_quota=g.vcpu_quota, vcpu_period=g.vcpu_period)
            guest.disks = [IoDisk(
                name="vda", path=f"/var/lib/libvirt/images/{g.name}.qcow2",
                guaranteed={k: g.io_guaranteed.get(k, 0) for k in IO_KEYS},
                maximum={k: g.io_maximum.get(k, 0) for k in IO_KEYS},
                current={k: 0 for k in IO_KEYS})]
            self.guests[g.name] = guest
        self._started_files: set[str] = set()
        with self.lock:
            self._update_running()
            if self.tree is not None:
                self.tree.init_ksm_controls({"run": k.run, "pages_to_scan": k.pages_to_scan,
                                             "sleep_millisecs": k.sleep_millisecs,
                                             "merge_across_nodes": k.merge_across_nodes})
                self.write_tree()

    # -- time ------------------------------------------------------------------
    @property
    def elapsed(self) -> float:
        """Simulated seconds since the scenario started."""
        return self.now - self.t0

    def advance_to(self, t: float) -> int:
        """Step (in fixed steps) up to time t; read KSM tunables from the tree
        first and rewrite the tree after. Returns the number of steps taken.
        Raises OSError when the tree cannot be written."""
        with self.lock:
            n = int((t - self.now) / self.dt + 1e-9)
            if n <= 0:
                return 0
            if self.tree is not None:
                self.ksm.apply_controls(self.tree.read_ksm_controls())
            for _ in range(n):
                self._step()
            if self.tree is not None:
                self.write_tree()
            return n

    def advance(self, seconds: float) -> int:
        """advance_to(now + seconds)."""
        return self.advance_to(self.now + seconds)

    def _update_running(self) -> None:
        t = self.elapsed
        for g in self.guests.values():
            should = (not g.vanished and g.spec.start <= t
                      and (g.spec.stop is None or t < g.spec.stop))
            if should and not g.running:
                g.boot(t)
            elif not should and g.running:
                g.running = False

    def _step(self) -> None:
        dt = self.dt
        self.now = self.t0 + (self.steps + 1) * dt  # no float drift over long runs
        self.steps += 1
        self._update_running()
        t = self.elapsed
        running = self.running_guests()
        for g in running:
            g.step(t, dt)
        total_pages = sum(g.footprint for g in running) / 4
        shareable = sum(g.footprint * g.spec.shareable for g in running) / 4
        self.ksm.step(dt, total_pages, shareable)
        self._host_step(dt)

    def _host_step(self, dt: float) -> None:
        need = self.host_need()
        room = self.mem_total - self.min_free - need
        self.host_cache = min(float(self.scenario.host.cache_mib * MIB), max(0.0, room))
        deficit = min(self.swap_total, max(0.0, -room))
        swap_rate = 0.0
        if deficit > self.host_swap:
            swap_rate = (deficit - self.host_swap) / dt
            self.pswpout += (deficit - self.host_swap) / 4
            self.host_swap = deficit
        elif self.host_swap > deficit:
            back = min(self.host_swap - deficit, HOST_SWAPIN_RATE * dt)
            swap_rate = back / dt
            self.pswpin += back / 4
            self.pgmajfault += back / 4
            self.host_swap -= back
        self.pgfault += 1000 * dt
        # Stalls start as free memory nears the low watermark and grow with swap traffic.
        low = 3 * self.min_free
        tight = max(0.0, min(1.0, (low - self.mem_free()) / low))
        thrash = min(1.0, swap_rate / (64 * MIB))
        some = min(1.0, 0.3 * tight + 0.7 * thrash)
        self.psi_some.step(some, dt)
        self.psi_full.step(some * 0.4, dt)

    # -- derived figures ---------------------------------------------------------
    def running_guests(self) -> list[SimGuest]:
        return [g for g in self.guests.values() if g.running]

    def host_need(self) -> float:
        """Memory the host must back (KiB) before its own cache and swap."""
        guests = sum(g.footprint for g in self.running_guests())
        return self.scenario.host.base_used_mib * MIB + HOST_BUFFERS + guests - self.ksm.saved_kib

    def mem_free(self) -> float:
        """MemFree (KiB)."""
        used = self.host_need() - self.host_swap + self.host_cache
        return max(self.min_free / 4, self.mem_total - used)

    def meminfo(self) -> dict[str, int]:
        """The host's /proc/meminfo values (KiB)."""
        free = self.mem_free()
        guests = sum(g.footprint for g in self.running_guests())
        anon = max(0.0, guests - self.ksm.saved_kib - self.host_swap) + self.scenario.host.base_used_mib * MIB / 2
        committed = sum(g.balloon_cur for g in self.running_guests()) + self.scenario.host.base_used_mib * MIB
        values = {
            "MemTotal": self.mem_total,
            "MemFree": free,
            "MemAvailable": free + 0.9 * self.host_cache,
            "Buffers": HOST_BUFFERS,
            "Cached": self.host_cache,
            "SwapCached": 0,
            "Active": anon * 0.7 + self.host_cache * 0.5,
            "Inactive": anon * 0.3 + self.host_cache * 0.5,
            "SwapTotal": self.swap_total,
            "SwapFree": self.swap_total - self.host_swap,
            "Dirty": 0,
            "AnonPages": anon,
            "Mapped": self.host_cache * 0.2,
            "Shmem": 4 * MIB,
            "Slab": 96 * MIB,
            "CommitLimit": self.swap_total + self.mem_total / 2,
            "Committed_AS": committed,
            "HugePages_Total": 0,
            "HugePages_Free": 0,
            "Hugepagesize": 2048,
        }
        return {k: int(v) for k, v in values.items()}

    def vmstat(self) -> dict[str, int]:
        info = self.meminfo()
        values = {
            "nr_free_pages": info["MemFree"] // 4,
            "nr_anon_pages": info["AnonPages"] // 4,
            "nr_file_pages": (info["Cached"] + info["Buffers"]) // 4,
            "pgpgin": self.pswpin * 4,
            "pgpgout": self.pswpout * 4,
            "pswpin": self.pswpin,
            "pswpout": self.pswpout,
            "pgfault": self.pgfault,
            "pgmajfault": self.pgmajfault,
        }
        return {k: int(v) for k, v in values.items()}

    def free_ratio(self) -> float:
        """(MemFree + Buffers + Cached) / MemTotal: MOM's mem_free / mem_available."""
        info = self.meminfo()
        return (info["MemFree"] + info["Buffers"] + info["Cached"]) / info["MemTotal"]

    # -- the tree ------------------------------------------------------------------
    def tree_files(self) -> dict[str, str]:
        """Every file the simulator owns, keyed by path relative to the tree root."""
        files = {
            "proc/meminfo": render_meminfo(self.meminfo()),
            "proc/vmstat": render_vmstat(self.vmstat()),
            "proc/pressure/memory": render_pressure(self.psi_some.values(), self.psi_full.values()),
        }
        for key, value in self.ksm.stats().items():
            assert key in KSM_STATS
            files[f"{KSM_DIR}/{key}"] = f"{value}\n"
        ksmd_ticks = int(self.ksm.cpu_ticks)
        files[f"proc/{KSMD_PID}/stat"] = render_pid_stat(KSMD_PID, "ksmd", "S", 0, ksmd_ticks, 0, 0)
        for g in self.running_guests():
            vsize = g.max_kib + QEMU_OVERHEAD
            rss = int(g.footprint)
            files[f"proc/{g.pid}/status"] = render_pid_status(g.pid, "qemu-kvm", vsize, rss)
            files[f"proc/{g.pid}/stat"] = render_pid_stat(
                g.pid, "qemu-kvm", "S", int(g.cpu_ticks), int(g.cpu_ticks) // 10, vsize * 1024, rss // 4)
        return files

    def write_tree(self) -> None:
        """Write the whole tree; static files only once. Raises OSError."""
        assert self.tree is not None
        files = self.tree_files()
        if "static" not in self._started_files:
            files["proc/cpuinfo"] = render_cpuinfo(self.scenario.host.cpus)
            files[f"proc/{KSMD_PID}/comm"] = "ksmd\n"
            self._started_files.add("static")
        running = {g.pid for g in self.running_guests()}
        for g in self.guests.values():
            key = f"pid{g.pid}"
            if g.pid in running and key not in self._started_files:
                files[f"proc/{g.pid}/comm"] = "qemu-kvm\n"
                files[f"proc/{g.pid}/cmdline"] = f"qemu-kvm\0-name\0guest={g.name}\0-uuid\0{g.spec.uuid}\0"
                self._started_files.add(key)
            elif g.pid not in running and key in self._started_files:
                self.tree.remove_dir(f"proc/{g.pid}")
                self._started_files.discard(key)
        self.tree.write(files)

    def guest(self, name: str) -> SimGuest:
        """The guest called name (running or not); raises KeyError."""
        return self.guests[name]

    def vanish(self, name: str) -> None:
        """Make a guest disappear at once, as if destroyed; raises KeyError."""
        with self.lock:
            g = self.guests[name]
            g.vanished = True
            g.running = False
            if self.tree is not None:
                self.write_tree()
