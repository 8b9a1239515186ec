"""What the simulated host can tell a benchmark that a real host would not.

A policy is judged by what its guests and host went through, not by what MOM
saw: a guest's stall time, OOM kills, host swap. The simulator knows these
exactly; :meth:`mom.sim.model.SimModel.observe` returns them after each step as
plain values. Memory in KiB, times in simulated seconds; ``*_total`` fields
only grow.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class GuestObservation:
    """One guest at one instant."""

    name: str
    running: bool                 # False before its start time, after its stop, or once killed
    demand_kib: int               # what its workload wants now (working set + cold anon it keeps)
    working_set_kib: int          # the hot part it touches continuously
    balloon_kib: int              # memory the guest sees (its current balloon size)
    target_kib: int               # the balloon target last set
    max_kib: int                  # its maximum (boot) memory
    min_kib: int                  # its guarantee (scenario "min"), 0 when none
    resident_kib: int             # its footprint in host RAM (touched, not ballooned or reported)
    host_swap_kib: int            # its pages on the host's swap
    swap_kib: int                 # its own swap in use
    page_cache_kib: int
    stall_seconds_total: float    # time spent waiting on memory: own swap-ins and faults, host-swap faults
    major_faults_total: int
    swap_in_kib_total: int
    oom_kills_total: int          # its own OOM killer's kills
    killed_by_host: bool          # the host's OOM killer chose its QEMU
    # Added by the model (defaults keep older constructors working):
    host_stall_seconds_total: float = 0.0   # the part of stall_seconds_total due to host swap
    shares: int = 1000            # its scenario weight (for share-based policies)
    virtio_mem_kib: int = 0       # plugged virtio-mem (the guest sees balloon_kib + this); 0 without a device
    virtio_mem_requested_kib: int = 0   # the device's requested size
    virtio_mem_max_kib: int = 0   # the device's region, the most it can plug; 0 without a device
    free_page_reporting: bool = False   # its balloon reports free pages (resident_kib falls by itself)


@dataclass(frozen=True)
class HostObservation:
    """The host and every guest the scenario has, at one instant."""

    time: float                   # simulated seconds since the scenario's start
    ram_kib: int                  # MemTotal
    free_kib: int                 # MemFree
    available_kib: int            # MemAvailable
    swap_used_kib: int
    ksm_saved_kib: int            # pages_sharing * page size
    psi_some_total_us: int        # /proc/pressure/memory "some" total
    oom_kills_total: int          # QEMU processes the host's OOM killer took
    host_processes_kib: int       # memory of the scenario's host-side processes
    guests: tuple[GuestObservation, ...] = field(default_factory=tuple)
