"""The simulated host and guests, advanced in fixed steps of simulated time.

The guests' side (balloon driver, reclaim, swap, thrashing, OOM, free page
reporting, statistics) is in :mod:`mom.sim.guest`, KSM in :mod:`mom.sim.ksm`;
this module is the host: it backs what the guests touched plus its own
processes, drops its page cache, swaps the coldest guest memory at a bounded
rate, serves the guests' faults on host swap, kills the largest QEMU past RAM
plus swap, and accounts PSI from the stall time it modelled. doc/sim-model.md
names each rule and its numbers.

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

from mom.core.disks import IO_KEYS
from mom.sim.guest import PAGE, SimGuest
from mom.sim.ksm import KsmState
from mom.sim.observation import GuestObservation, HostObservation
from mom.sim.proctree import (
    KSM_DIR,
    KSM_STATS,
    ProcTree,
    render_cpuinfo,
    render_meminfo,
    render_pid_stat,
    render_pid_status,
    render_pressure,
    render_vmstat,
)
from mom.sim.scenario import ProcessSpec, Scenario
from mom.sim.workloads import MIB, Workload, build_workload

HOST_BUFFERS = 32 * MIB
QEMU_OVERHEAD = 64 * MIB     # virtual size a qemu process has beyond guest RAM
HOST_SWAP_OUT_RATE = 256 * MIB   # KiB/s the host writes to its swap (an SSD)
HOST_SWAP_IOPS = 50_000.0        # 4 KiB swap-ins the host's swap serves per second
HOST_FAULT_S = 100e-6            # a vCPU's wait per fault on host swap
KSMD_PID = 57
FIRST_GUEST_PID = 4001

__all__ = ["SimModel", "SimGuest", "HostProcess", "FIRST_GUEST_PID"]


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
class HostProcess:
    """A host-side program: anonymous memory the host keeps in RAM."""

    spec: ProcessSpec
    workload: Workload
    demand: float = 0.0
    running: bool = False


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
        self.pswpin = self.pswpout = 0.0
        self.pgfault = self.pgmajfault = 0.0
        self.oom_kills = 0
        self.reclaim_backlog = 0.0
        self.events: list[dict[str, Any]] = []   # {"time", "kind", "name"}: oom, host_oom, start, stop
        self.psi_some, self.psi_full = Psi(), Psi()
        k = scenario.ksm
        self.ksm = KsmState(run=k.run, pages_to_scan=k.pages_to_scan,
                            sleep_millisecs=k.sleep_millisecs, merge_across_nodes=k.merge_across_nodes)
        self.guests: dict[str, SimGuest] = {}
        for i, g in enumerate(scenario.guests):
            # A str seed is hashed with SHA-512, so it does not depend on PYTHONHASHSEED.
            rng = random.Random(f"{self.seed}/{g.name}")
            workload = build_workload(g.workload, rng, g.max_mib * MIB)
            workload.limit = math.inf  # programs may want more than RAM plus swap: the OOM killer answers
            guest = SimGuest(spec=g, workload=workload,
                             pid=FIRST_GUEST_PID + i, vcpu_quota=g.vcpu_quota, vcpu_period=g.vcpu_period)
            guest.disks = [IoDisk(
                name="vda", path=f"/var/lib/libvirt/images/{g.name}.qcow2",
                guaranteed={k: g.io_guaranteed.get(k, 0) for k in IO_KEYS},
                maximum={k: g.io_maximum.get(k, 0) for k in IO_KEYS},
                current=dict.fromkeys(IO_KEYS, 0))]
            self.guests[g.name] = guest
        self.processes = [HostProcess(spec=p, workload=build_workload(
            p.workload, random.Random(f"{self.seed}/process/{p.name}"), self.mem_total + self.swap_total))
            for p in scenario.processes]
        self._running: list[SimGuest] = []
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

    def _event(self, kind: str, name: str) -> None:
        self.events.append({"time": self.elapsed, "kind": kind, "name": name})

    def _update_running(self) -> None:
        t = self.elapsed
        changed = False
        for g in self.guests.values():
            should = (not g.vanished and not g.killed_by_host and g.spec.start <= t
                      and (g.spec.stop is None or t < g.spec.stop))
            if should and not g.running:
                g.boot(t, self.dt)
                self._event("start", g.name)
                changed = True
            elif not should and g.running:
                g.stop()
                self._event("stop", g.name)
                changed = True
        if changed or self.steps == 0:
            self._running = [g for g in self.guests.values() if g.running]
        for p in self.processes:
            p.running = p.spec.start <= t and (p.spec.stop is None or t < p.spec.stop)
            if not p.running:
                p.demand = 0.0

    def _step(self) -> None:
        dt = self.dt
        self.now = self.t0 + (self.steps + 1) * dt  # no float drift over long runs
        self.steps += 1
        self._update_running()
        t = self.elapsed
        for g in self._running:
            kills = g.oom_kills
            g.step(t, dt)
            if g.oom_kills != kills:
                self._event("oom", g.name)
        for p in self.processes:
            if p.running:
                p.demand = p.workload.demand(t, dt)
        self._ksm_step(dt)
        self._host_step(dt)

    def _ksm_step(self, dt: float) -> None:
        groups: dict[str, list[float]] = {}
        total = 0.0
        for g in self._running:
            resident = g.resident / PAGE
            total += resident
            if g.spec.shareable > 0:
                groups.setdefault(g.spec.image, []).append(resident * g.spec.shareable)
        self.ksm.step(dt, total, list(groups.values()))

    def _host_step(self, dt: float) -> None:
        """Back the guests and processes: page cache first, then swap at a
        bounded rate (coldest guest memory first), then the OOM killer; serve
        the faults on host swap; account stall time and PSI."""
        limit = self.mem_total - self.min_free
        deficit = self._host_oom() - limit  # what must be on swap now
        swapped = self.host_swap
        budget = HOST_SWAP_OUT_RATE * dt
        if deficit > swapped:
            out = self._swap_out(min(deficit - swapped, budget))
            self.pswpout += out / PAGE
            swapped += out
        # What swap could not take yet is direct reclaim: the guests that asked
        # for memory wait on it.
        self.reclaim_backlog = max(0.0, deficit - swapped)
        self.host_cache = min(float(self.scenario.host.cache_mib * MIB), max(0.0, -deficit))
        wait = min(1.0, self.reclaim_backlog / max(1.0, budget))
        faults = [g.host_faults() for g in self._running]
        total = sum(faults)
        served_share = min(1.0, HOST_SWAP_IOPS / total) if total > 0 else 0.0
        some_clear = 1.0
        full = 1.0 if self._running else 0.0
        # min() written out in this per-guest loop (the same values, without a call).
        for g, f in zip(self._running, faults, strict=True):
            back = f * served_share * PAGE * dt
            if not back < g.host_swap:
                back = g.host_swap  # min(g.host_swap, back)
            g.host_swap -= back
            refault = g.host_refault
            g.host_refault = 0.0
            reads = back / PAGE + refault / PAGE
            g.qemu_majflt += reads
            self.pswpin += reads
            self.pgmajfault += reads
            share = f * HOST_FAULT_S + refault / PAGE * HOST_FAULT_S / dt
            if g.grew > 0:
                share += wait
            if not share < 1.0:
                share = 1.0  # min(1.0, share)
            g.host_stall_seconds += share * dt
            stalled = share + g.guest_stall
            g.stall_seconds += (stalled if stalled < 1.0 else 1.0) * dt
            some_clear *= 1.0 - share
            full *= share
        self.pgfault += 1000 * dt
        self.psi_some.step(1.0 - some_clear, dt)
        self.psi_full.step(full, dt)

    def _swap_out(self, amount: float) -> float:
        """Swap out up to amount of guest memory: the cold parts of all guests
        in proportion, then the hot parts. Returns what went out."""
        done = 0.0
        for hot_too in (False, True):
            want = amount - done
            if want <= 0:
                break
            limit = [(g.touched if hot_too else g.host_cold) - g.host_swap for g in self._running]
            room = sum(x for x in limit if x > 0)
            if room <= 0:
                continue
            k = min(1.0, want / room)
            for g, x in zip(self._running, limit, strict=True):
                if x > 0:
                    done += g.host_swap_out(x * k, hot_too)
        return done

    def _host_oom(self) -> float:
        """Past RAM plus swap the host's OOM killer takes the largest QEMU.
        Returns the host's need (host_need()) after it."""
        limit = self.mem_total - self.min_free + self.swap_total
        need = self.host_need()
        while self._running and need > limit:
            victim = max(self._running, key=lambda g: g.touched)
            victim.killed_by_host = True
            victim.stop()
            self.oom_kills += 1
            self._event("host_oom", victim.name)
            self._running = [g for g in self._running if g is not victim]
            need = self.host_need()
        return need

    # -- derived figures ---------------------------------------------------------
    def running_guests(self) -> list[SimGuest]:
        return [g for g in self.guests.values() if g.running]

    @property
    def host_swap(self) -> float:
        """Guest memory on the host's swap (KiB)."""
        return sum(g.host_swap for g in self._running)

    def processes_kib(self) -> float:
        return sum(p.demand for p in self.processes if p.running)

    def host_need(self) -> float:
        """Memory the host must back in RAM or swap (KiB), before its own cache."""
        guests = sum(g.touched for g in self._running)
        return (self.scenario.host.base_used_mib * MIB + HOST_BUFFERS + self.processes_kib()
                + guests - self.ksm.saved_kib)

    def mem_free(self) -> float:
        """MemFree (KiB)."""
        used = self.host_need() - self.host_swap + self.host_cache
        return max(self.min_free / 4, self.mem_total - used)

    def meminfo(self) -> dict[str, int]:
        """The host's /proc/meminfo values (KiB)."""
        free = self.mem_free()
        host_swap = self.host_swap
        guests = sum(g.touched for g in self._running)
        base = self.scenario.host.base_used_mib * MIB
        anon = max(0.0, guests - self.ksm.saved_kib - host_swap) + base / 2 + self.processes_kib()
        committed = sum(g.size for g in self._running) + base + self.processes_kib()
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
            "SwapFree": self.swap_total - host_swap,
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

    def observe(self) -> HostObservation:
        """What the host and every guest went through, as of now (see mom.sim.observation)."""
        with self.lock:
            info = self.meminfo()
            guests = tuple(self._observe_guest(g) for g in self.guests.values())
            return HostObservation(
                time=self.elapsed, ram_kib=info["MemTotal"], free_kib=info["MemFree"],
                available_kib=info["MemAvailable"], swap_used_kib=info["SwapTotal"] - info["SwapFree"],
                ksm_saved_kib=int(self.ksm.saved_kib), psi_some_total_us=int(self.psi_some.total_us),
                oom_kills_total=self.oom_kills, host_processes_kib=int(self.processes_kib()), guests=guests)

    @staticmethod
    def _observe_guest(g: SimGuest) -> GuestObservation:
        on = g.running
        return GuestObservation(
            name=g.name, running=on, demand_kib=int(g.demand) if on else 0,
            working_set_kib=int(g.working_set) if on else 0,
            balloon_kib=int(g.balloon_cur) if on else 0, target_kib=int(g.balloon_target),
            max_kib=g.max_kib, min_kib=g.spec.min_mib * MIB,
            resident_kib=int(g.resident), host_swap_kib=int(g.host_swap) if on else 0,
            swap_kib=int(g.swap_used) if on else 0, page_cache_kib=int(g.cache) if on else 0,
            stall_seconds_total=g.stall_seconds, major_faults_total=int(g.major_fault),
            swap_in_kib_total=int(g.swap_in), oom_kills_total=g.oom_kills, killed_by_host=g.killed_by_host,
            host_stall_seconds_total=g.host_stall_seconds, shares=g.spec.shares,
            virtio_mem_kib=int(g.vmem_size) if on else 0, virtio_mem_requested_kib=int(g.vmem_requested),
            virtio_mem_max_kib=g.vmem_max,
            free_page_reporting=g.spec.free_page_reporting)

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
            vsize = g.max_kib + g.vmem_max + QEMU_OVERHEAD  # QEMU maps the virtio-mem region whole
            rss = int(g.resident)
            files[f"proc/{g.pid}/status"] = render_pid_status(g.pid, "qemu-kvm", vsize, rss)
            files[f"proc/{g.pid}/stat"] = render_pid_stat(
                g.pid, "qemu-kvm", "S", int(g.cpu_ticks), int(g.cpu_ticks) // 10, vsize * 1024, rss // 4,
                minflt=int(g.qemu_minflt), majflt=int(g.qemu_majflt))
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
            if g.running:
                g.stop()
                self._event("stop", name)
            self._running = [x for x in self._running if x is not g]
            if self.tree is not None:
                self.write_tree()
