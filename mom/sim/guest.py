"""One simulated guest: its memory as the guest kernel and the host see it.

The guest's memory (``size``, what it sees: its boot memory ``balloon_cur``,
which the balloon manages, plus what its virtio-mem device has plugged,
``vmem_size``) splits into::

    reserve + hot_ram + cold_ram + cache + free_touched + untouched

- ``reserve``: the kernel's own memory and watermarks (64 MiB + 3% of max).
- ``hot_ram``/``cold_ram``: the workload's anonymous memory in RAM; the hot part
  (the working set) is touched all the time, the cold part rarely.
  ``hot_swap``/``cold_swap`` is the rest, on the guest's own swap.
- ``cache``: the page cache.
- ``free_touched``: free pages the guest once used: the host still backs them.
- ``untouched``: free pages the host does not back (never used, given back by
  deflating, or returned by free page reporting).

The host backs ``touched = size - untouched``; ``host_swap`` of it is on
the host's swap, the rest is resident. Each rule's numbers are named below and
in doc/sim-model.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from mom.sim.ksm import CLK_TCK
from mom.sim.scenario import GuestSpec
from mom.sim.workloads import MIB, Workload

PAGE = 4  # KiB
RESERVE_FIXED = 64 * MIB             # guest kernel: image, early allocations, slab (calibrated)
RESERVE_SHARE = 0.03                 # ... plus struct pages, page tables, watermarks per GiB
BALLOON_RATE = 1024 * MIB            # KiB/s the driver inflates into free memory or deflates
GUEST_SWAP_OUT_RATE = 128 * MIB      # KiB/s the guest can write to its swap (virtual disk)
GUEST_SWAP_IOPS = 20_000.0           # 4 KiB swap-ins the guest's disk serves per second
GUEST_FAULT_S = 100e-6               # wait per major fault (a 4 KiB read from SSD)
HOT_PERIOD = 20.0                    # s between touches of a working-set page
COLD_PERIOD = 600.0                  # s between touches of a cold page
CACHE_FILL_RATE = 8 * MIB            # KiB/s the page cache grows toward its share
FPR_DELAY = 2.0                      # s a freed block waits before it is reported
FPR_PASS_SHARE = 1.0 / 16            # share of free memory one reporting pass handles
OOM_RESTART_S = 60.0                 # s a killed program takes to come back
VMEM_PLUG_RATE = 1024 * MIB          # KiB/s the virtio-mem driver plugs (adds and onlines blocks)
VMEM_UNPLUG_RATE = 256 * MIB         # KiB/s it unplugs (migrates pages out of the blocks first)
RECLAIM_BATCH = 32 * PAGE            # KiB one direct reclaim pass aims for (SWAP_CLUSTER_MAX pages)
BASE_MAJOR_FAULTS = 0.5              # per second (file-backed pages, always there)
BASE_MINOR_FAULTS = 50.0             # per second


@dataclass
class SimGuest:
    """One guest's state; sizes in KiB, counters cumulative."""

    spec: GuestSpec
    workload: Workload
    pid: int
    balloon_cur: float = 0.0
    balloon_target: float = 0.0
    demand: float = 0.0
    working_set: float = 0.0
    hot_ram: float = 0.0
    cold_ram: float = 0.0
    hot_swap: float = 0.0
    cold_swap: float = 0.0
    cache: float = 0.0
    free_touched: float = 0.0
    host_swap: float = 0.0
    swap_in: float = 0.0
    swap_out: float = 0.0
    major_fault: float = 0.0
    minor_fault: float = 0.0
    stall_seconds: float = 0.0
    host_stall_seconds: float = 0.0
    oom_kills: int = 0
    alloc_stalls: float = 0.0         # allocations that entered direct reclaim (in passes of RECLAIM_BATCH)
    vmem_size: float = 0.0            # plugged virtio-mem (KiB, whole blocks)
    vmem_requested: float = 0.0       # what the device asks the guest to plug
    vmem_stalled: bool = False        # unplug waits for free memory
    _vmem_credit: float = 0.0         # KiB the driver may still move (rate * time not yet spent on a block)
    killed_by_host: bool = False
    balloon_stalled: bool = False
    cpu_ticks: float = 0.0
    vcpu_quota: int = -1
    vcpu_period: int = 100000
    disks: list[Any] = field(default_factory=list)
    running: bool = False
    vanished: bool = False
    grew: float = 0.0                 # touched memory added this step (host direct reclaim)
    qemu_minflt: float = 0.0          # host page faults of its QEMU: pages the host backed anew
    qemu_majflt: float = 0.0          # ... and pages it read back from host swap
    guest_stall: float = 0.0          # share of this step stalled inside the guest
    host_refault: float = 0.0         # KiB this step read back from host swap on reuse
    _fpr_lag: float = 0.0
    _oom_cap: float = math.inf
    _oom_until: float = -math.inf
    _stats: dict[str, int] | None = None
    _stats_at: float = -math.inf

    # -- sizes -------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def max_kib(self) -> int:
        return self.spec.max_mib * MIB

    def __post_init__(self) -> None:
        # Memory the guest kernel keeps for itself (82 MiB of a 512 MiB guest
        # measured: see doc/sim-model.md, Calibration). Fixed per guest.
        self.reserve: float = RESERVE_FIXED + RESERVE_SHARE * self.max_kib

    @property
    def size(self) -> float:
        """The memory the guest sees: boot memory left by the balloon plus plugged virtio-mem."""
        return self.balloon_cur + self.vmem_size

    @property
    def vmem_max(self) -> int:
        """The virtio-mem device's region (KiB); 0 without a device."""
        return self.spec.virtio_mem.max_kib if self.spec.virtio_mem is not None else 0

    # untouched and touched are read several times per guest and step: size is
    # written out in them rather than read through its property.
    @property
    def untouched(self) -> float:
        u = (self.balloon_cur + self.vmem_size - self.reserve - self.hot_ram - self.cold_ram - self.cache
             - self.free_touched)
        return u if u > 0.0 else 0.0

    @property
    def touched(self) -> float:
        """Guest memory the host backs (in RAM or on host swap), before KSM."""
        if not self.running:
            return 0.0
        size = self.balloon_cur + self.vmem_size
        u = size - self.reserve - self.hot_ram - self.cold_ram - self.cache - self.free_touched
        return size - u if u > 0.0 else size

    footprint = touched

    @property
    def resident(self) -> float:
        """Touched memory in host RAM."""
        r = self.touched - self.host_swap
        return r if r > 0.0 else 0.0  # max(0.0, r) without the call (read for every guest and step)

    @property
    def swap_used(self) -> float:
        return self.hot_swap + self.cold_swap

    @property
    def anon_ram(self) -> float:
        return self.hot_ram + self.cold_ram

    @property
    def host_cold(self) -> float:
        """Touched memory the host's LRU sees as cold: free, cache, cold anon."""
        return self.free_touched + self.cache + self.cold_ram

    # -- control -------------------------------------------------------------------------
    def set_balloon_target(self, kib: float) -> int:
        """Clamp to [0, max] and return the target taken (a guest without a
        driver keeps the target but never moves)."""
        self.balloon_target = min(float(self.max_kib), max(0.0, float(kib)))
        return int(self.balloon_target)

    def set_vmem_requested(self, kib: int) -> None:
        """The device's requested size; the caller checked it (a multiple of the
        block within the region, as QEMU insists)."""
        self.vmem_requested = float(kib)

    def boot(self, t: float, dt: float) -> None:
        """Start at scenario time t: the guest plugs its requested virtio-mem, the
        kernel and the programs touch what they use, the page cache fills half its
        share."""
        boot_size = float((self.spec.balloon_mib or self.spec.max_mib) * MIB)
        self.balloon_cur = self.balloon_target = boot_size
        vmem = self.spec.virtio_mem
        if vmem is not None:
            self.vmem_size = self.vmem_requested = float(vmem.requested_kib)
            self._vmem_credit = 0.0
        size = self.size
        self.running = True
        self.hot_ram = self.cold_ram = self.hot_swap = self.cold_swap = 0.0
        self.free_touched = self.cache = self.host_swap = 0.0
        self._want(t, dt)
        room = max(0.0, size - self.reserve)
        self.hot_ram = min(room, self.working_set)
        self.cold_ram = min(room - self.hot_ram, self.demand - self.working_set)
        self.cache = 0.5 * self.spec.cache_fraction * max(0.0, room - self.anon_ram)
        if self._stats_due(t):
            self._snapshot(t)

    # -- one step --------------------------------------------------------------------------
    def step(self, t: float, dt: float) -> None:
        """Advance dt seconds at scenario time t (the guest's side; the host's
        swap and faults are applied by the model)."""
        before = self.touched
        budget = [GUEST_SWAP_OUT_RATE * dt]  # swap writes left this step
        pending = self._balloon(t, dt, budget)
        if self.spec.virtio_mem is not None:
            self._virtio_mem(dt, self.spec.virtio_mem.block_kib)
        self._want(t, dt)
        pending += self._follow_demand(t, budget)
        faults = self._thrash(dt, budget)
        self._fill_cache(dt)
        if self.spec.free_page_reporting:
            self._report_free(dt)
        # min() and max() written out below and in the step's helpers: the same
        # values, without a call (this runs for every guest and step).
        rate = GUEST_SWAP_OUT_RATE * dt
        stall = faults * GUEST_FAULT_S + pending / (rate if rate > 1.0 else 1.0)
        self.guest_stall = stall if stall < 1.0 else 1.0
        self.major_fault += BASE_MAJOR_FAULTS * dt
        self.minor_fault += BASE_MINOR_FAULTS * dt
        self.cpu_ticks += dt * CLK_TCK * 0.05 * self.spec.vcpus
        grew = self.touched - before
        self.grew = grew if grew > 0.0 else 0.0
        # The host backs each newly touched page on its first access (also a page
        # free page reporting or the balloon had returned): a fault of QEMU's.
        self.qemu_minflt += self.grew / PAGE
        if self._stats_due(t):
            self._snapshot(t)

    def _want(self, t: float, dt: float) -> None:
        """What the workload wants now (capped for a while after an OOM kill)."""
        demand = self.workload.demand(t, dt)
        if t < self._oom_until:
            demand = min(demand, self._oom_cap)
        self.demand = demand
        self.working_set = self.spec.working_set * demand

    # Reclaim: free memory first (touched free pages, which the allocator
    # reuses first, then untouched), then page cache, then cold anon to swap,
    # then hot anon to swap.
    def _free_mem(self) -> float:
        # untouched + free_touched, with untouched written out (called several times
        # per guest and step); the same operations in the same order.
        free_touched = self.free_touched
        u = (self.balloon_cur + self.vmem_size - self.reserve - self.hot_ram - self.cold_ram - self.cache
             - free_touched)
        return (u if u > 0.0 else 0.0) + free_touched

    def _take_free(self, amount: float, discard: bool = True) -> float:
        """Remove up to amount of free memory from the guest's use; returns the
        part that was touched. discard: the balloon or free page reporting
        hands the pages to the host, which drops them (their host swap slots
        too); otherwise the guest reuses them and the ones on host swap must
        be read back in first."""
        free_touched = self.free_touched
        from_touched = free_touched if free_touched < amount else amount  # min(amount, free_touched)
        if from_touched > 0 and self.host_swap > 0:
            # Free touched pages are the host's coldest: its swap holds them first.
            on_swap = from_touched * min(1.0, self.host_swap / self.free_touched)
            self.host_swap -= on_swap
            if not discard:
                self.host_refault += on_swap
        self.free_touched -= from_touched
        return from_touched

    def _reclaim(self, amount: float, budget: list[float], hot_too: bool = True) -> float:
        """Make up to amount more memory free; returns what was freed."""
        cache = self.cache
        got = cache if cache < amount else amount  # min(amount, cache)
        self.cache -= got
        self.free_touched += got
        for part in ("cold", "hot") if hot_too else ("cold",):
            if got >= amount:
                break
            space = self.spec.swap_mib * MIB - self.swap_used
            ram = self.cold_ram if part == "cold" else self.hot_ram
            n = min(amount - got, ram, space, budget[0])
            if n <= 0:
                continue
            budget[0] -= n
            if part == "cold":
                self.cold_ram -= n
                self.cold_swap += n
            else:
                self.hot_ram -= n
                self.hot_swap += n
            self.swap_out += n
            self.free_touched += n
            got += n
        return got

    def _balloon(self, t: float, dt: float, budget: list[float]) -> float:
        """Move the balloon toward its target; returns inflation left undone for
        lack of swap bandwidth (the guest waits on it)."""
        self.balloon_stalled = False
        if not self.spec.balloon_driver:
            return 0.0
        if self.spec.balloon_stuck_at is not None and t >= self.spec.balloon_stuck_at:
            return 0.0
        rate = BALLOON_RATE * self.spec.balloon_speed * dt
        diff = self.balloon_target - self.balloon_cur
        if diff > 0:
            self.balloon_cur += min(diff, rate)  # deflated pages are untouched for the host
            return 0.0
        want = min(-diff, rate)
        if want <= 0:
            return 0.0
        free = self._free_mem()
        if free < want:
            self._reclaim(want - free, budget)
        got = min(want, self._free_mem())
        self._take_free(got)
        self.balloon_cur -= got
        if got < want - 1e-6:
            # "Out of puff": nothing more to reclaim now; retry on later steps.
            self.balloon_stalled = True
            space_left = self.spec.swap_mib * MIB - self.swap_used > 0 and self.anon_ram > 0
            if space_left and budget[0] <= 0:
                return want - got  # only the swap's speed holds it back
            # The balloon left the guest at its watermark with nothing to
            # reclaim: the programs' next allocation fails and the guest's OOM
            # killer fires (as the calibration guest did); the balloon then
            # takes what the killed program held.
            if self.anon_ram + self.swap_used > MIB:
                self._oom_kill(t)
        return 0.0

    def _virtio_mem(self, dt: float, block: int) -> None:
        """Move the plugged size toward the requested one in whole blocks, at
        VMEM_PLUG_RATE or VMEM_UNPLUG_RATE (a block larger than a step's worth
        takes several steps). Plugged blocks are untouched (the host backs them
        on first use). Unplugging empties blocks by migrating their pages into
        free memory elsewhere, so it takes only free memory (touched first: the
        host drops those pages) and never reclaims or swaps: without free
        memory it waits (``vmem_stalled``); unlike the balloon it never pushes
        the guest to OOM."""
        self.vmem_stalled = False
        diff = self.vmem_requested - self.vmem_size
        if diff == 0:
            self._vmem_credit = 0.0
            return
        self._vmem_credit += (VMEM_PLUG_RATE if diff > 0 else VMEM_UNPLUG_RATE) * dt
        want = min(abs(diff), self._vmem_credit) // block * block
        if diff > 0:
            got = want
            self.vmem_size += got
        else:
            got = min(want, self._free_mem() // block * block)
            if got > 0:
                self._take_free(got)
                self.vmem_size -= got
            self.vmem_stalled = got < want
        self._vmem_credit -= got
        if self.vmem_stalled:
            self._vmem_credit = min(self._vmem_credit, float(block))  # no burst once memory frees up

    def _allocate(self, amount: float, budget: list[float]) -> float:
        """Give the workload amount of free memory; returns what it got. Each
        allocation that must reclaim first is an allocation stall."""
        free = self._free_mem()
        if free < amount:
            freed = self._reclaim(amount - free, budget)
            self.alloc_stalls += max(1.0, freed / RECLAIM_BATCH)
        free = self._free_mem()
        got = free if free < amount else amount  # min(amount, free)
        from_touched = self._take_free(got, discard=False)
        self.minor_fault += (got - from_touched) / PAGE
        return got

    @staticmethod
    def _split_free(ram: float, swap: float, amount: float) -> tuple[float, float, float]:
        """Free amount of memory held as ram + swap, in proportion; returns
        (ram left, swap left, ram freed)."""
        total = ram + swap
        if total <= 0:
            return ram, swap, 0.0
        from_ram = amount * ram / total
        return ram - from_ram, max(0.0, swap - (amount - from_ram)), from_ram

    def _free_anon(self, hot: float, cold: float) -> None:
        """The programs free hot and cold memory (RAM and swap alike)."""
        if hot > 0:
            self.hot_ram, self.hot_swap, freed = self._split_free(self.hot_ram, self.hot_swap, hot)
            self.free_touched += freed
        if cold > 0:
            self.cold_ram, self.cold_swap, freed = self._split_free(self.cold_ram, self.cold_swap, cold)
            self.free_touched += freed

    def _follow_demand(self, t: float, budget: list[float]) -> float:
        """Grow or shrink hot and cold memory toward what the workload wants;
        returns growth left waiting on swap writes. Past RAM plus swap the
        guest's OOM killer fires."""
        waiting = 0.0
        want_hot, want_cold = self.working_set, self.demand - self.working_set
        have_hot, have_cold = self.hot_ram + self.hot_swap, self.cold_ram + self.cold_swap
        self._free_anon(have_hot - want_hot, have_cold - want_cold)
        if want_hot > have_hot:
            got = self._allocate(want_hot - have_hot, budget)
            self.hot_ram += got
            waiting += want_hot - have_hot - got
        if want_cold > have_cold:
            got = self._allocate(want_cold - have_cold, budget)
            self.cold_ram += got
            waiting += want_cold - have_cold - got
        if waiting > 1.0 and self._out_of_memory():
            self._oom_kill(t)
            return 0.0
        return waiting

    def _out_of_memory(self) -> bool:
        """Nothing left to reclaim: no free memory, no cache, swap full (or none)."""
        swap_full = self.swap_used >= self.spec.swap_mib * MIB - 1.0
        return self._free_mem() < 1.0 and self.cache < 1.0 and swap_full

    def _oom_kill(self, t: float) -> None:
        """Kill the biggest program: model it as half the workload's memory going
        away; it comes back after OOM_RESTART_S (demand capped until then)."""
        self.oom_kills += 1
        self._free_anon(0.5 * (self.hot_ram + self.hot_swap), 0.5 * (self.cold_ram + self.cold_swap))
        self._oom_cap = self.hot_ram + self.cold_ram + self.swap_used
        self._oom_until = t + OOM_RESTART_S
        self.demand = min(self.demand, self._oom_cap)
        self.working_set = self.spec.working_set * self.demand

    def _thrash(self, dt: float, budget: list[float]) -> float:
        """Missing working-set pages fault back in (and push others out when
        there is no room); returns major faults per second."""
        wanted = self.hot_swap / PAGE / HOT_PERIOD + self.cold_swap / PAGE / COLD_PERIOD
        if wanted <= 0:
            return 0.0
        served = GUEST_SWAP_IOPS if GUEST_SWAP_IOPS < wanted else wanted
        kib = served * PAGE * dt
        hot_share = (self.hot_swap / PAGE / HOT_PERIOD) / wanted
        back_hot = kib * hot_share
        if not back_hot < self.hot_swap:
            back_hot = self.hot_swap  # min(hot_swap, kib * hot_share)
        back_cold = kib - back_hot
        if not back_cold < self.cold_swap:
            back_cold = self.cold_swap  # min(cold_swap, kib - back_hot)
        # Without free memory or cache, each page read in pushes another out
        # (cold first, then the working set itself: thrashing).
        got = self._allocate(back_hot + back_cold, budget)
        hot_in = got if got < back_hot else back_hot
        self.hot_swap -= hot_in
        self.hot_ram += hot_in
        cold_in = got - hot_in
        if not cold_in < back_cold:
            cold_in = back_cold  # min(back_cold, got - hot_in)
        self.cold_swap -= cold_in
        self.cold_ram += cold_in
        # A fault whose page stays out (no room) still costs a read.
        self.swap_in += kib
        self.major_fault += served * dt
        return wanted

    def _fill_cache(self, dt: float) -> None:
        """The page cache grows into free memory up to its share; it only
        shrinks when reclaimed."""
        room = self.balloon_cur + self.vmem_size - self.reserve - (self.hot_ram + self.cold_ram)  # size, anon_ram
        if not room > 0.0:
            room = 0.0  # max(0.0, room)
        target = self.spec.cache_fraction * room
        if self.cache < target:
            grow = min(target - self.cache, CACHE_FILL_RATE * dt, self._free_mem())
            self._take_free(grow, discard=False)
            self.cache += grow

    def _report_free(self, dt: float) -> None:
        """Free page reporting: blocks free for FPR_DELAY seconds are reported
        in passes of FPR_PASS_SHARE of the free memory every FPR_DELAY seconds;
        the host discards them (they become untouched)."""
        k = min(1.0, dt / FPR_DELAY)
        self._fpr_lag += (self.free_touched - self._fpr_lag) * k
        ready = min(self.free_touched, self._fpr_lag)
        per_pass = FPR_PASS_SHARE * self._free_mem()
        n = min(ready, per_pass * dt / FPR_DELAY)
        if n > 0:
            self._take_free(n)
            self._fpr_lag = max(0.0, self._fpr_lag - n)

    # -- what the host applies -----------------------------------------------------------------
    def host_swap_out(self, amount: float, hot_too: bool) -> float:
        """The host swaps out up to amount of this guest's memory, cold first."""
        limit = self.touched if hot_too else self.host_cold
        n = max(0.0, min(amount, limit - self.host_swap))
        self.host_swap += n
        return n

    def host_faults(self) -> float:
        """Host swap-ins per second this guest's accesses need: working-set
        pages on host swap every HOT_PERIOD, cold ones every COLD_PERIOD."""
        host_swap = self.host_swap
        if host_swap <= 0:
            return 0.0
        hot = host_swap - (self.free_touched + self.cache + self.cold_ram)  # less host_cold
        if not hot > 0.0:
            hot = 0.0  # max(0.0, hot)
        cold_touched = self.cache + self.cold_ram
        if not cold_touched < host_swap:
            cold_touched = host_swap  # min(host_swap, cache + cold_ram)
        return hot / PAGE / HOT_PERIOD + cold_touched / PAGE / COLD_PERIOD

    def stop(self) -> None:
        """The guest shuts down (or is killed): the host frees all its memory."""
        self.running = False
        self.host_swap = 0.0
        self.guest_stall = 0.0
        self.grew = 0.0

    # -- statistics -------------------------------------------------------------------------------
    def _stats_due(self, t: float) -> bool:
        spec = self.spec
        if not spec.stats or not spec.balloon_driver:
            return False
        if spec.stats_stop is not None and t >= spec.stats_stop:
            return False
        return t - self._stats_at >= spec.stats_period - 1e-9

    def _snapshot(self, t: float) -> None:
        self._stats_at = t
        self._stats = self.live_stats()

    def live_stats(self) -> dict[str, int]:
        """The balloon driver's view now (KiB, counts)."""
        unused = self._free_mem()
        return {
            "mem_available": int(self.size),
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
            # Reported by Linux 6.12 and later guests; the model knows both.
            "oom_kills": self.oom_kills,
            "alloc_stalls": int(self.alloc_stalls),
        }

    def memory_stats(self) -> dict[str, int] | None:
        """What the driver last reported (stale when the guest stopped
        answering); None when it never reports."""
        return None if self._stats is None else dict(self._stats)
