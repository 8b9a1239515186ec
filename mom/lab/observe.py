"""The simulator's ground truth after a step, as a benchmark reads it.

:meth:`SimModel.observe` is the contract (mom.sim.observation). Until the
faithful model provides it, :func:`derive_observation` derives what it can from
today's model: guests there never stall on host swap or get OOM-killed, so those
figures are zero, and a guest's stall time is what its swap-ins would take at the
model's swap-in rate.
"""

from __future__ import annotations

from typing import Any

from mom.sim.observation import GuestObservation, HostObservation

# Today's model brings swapped pages back at this rate (mom.sim.model.SWAPIN_RATE):
# a guest waits about as long as the swap-in takes.
_SWAPIN_KIB_PER_S = 32 * 1024


def observe(model: Any) -> HostObservation:
    """The model's observation: its own observe() when it has one, else derived."""
    own = getattr(model, "observe", None)
    if callable(own):
        return own()
    return derive_observation(model)


def derive_observation(model: Any) -> HostObservation:
    """A HostObservation from today's SimModel (see the module's note)."""
    info = model.meminfo()
    running = [g for g in model.guests.values() if g.running]
    footprint_total = sum(g.footprint for g in running) or 1.0
    guests = tuple(_guest(g, model.host_swap * g.footprint / footprint_total if g.running else 0.0)
                   for g in model.guests.values())
    return HostObservation(
        time=model.elapsed, ram_kib=int(model.mem_total), free_kib=info["MemFree"],
        available_kib=info["MemAvailable"], swap_used_kib=int(model.host_swap),
        ksm_saved_kib=int(model.ksm.saved_kib), psi_some_total_us=int(model.psi_some.total_us),
        oom_kills_total=0, host_processes_kib=int(model.scenario.host.base_used_mib * 1024), guests=guests)


def _guest(g: Any, host_swap_kib: float) -> GuestObservation:
    return GuestObservation(
        name=g.name, running=bool(g.running), demand_kib=int(g.demand), working_set_kib=int(g.demand),
        balloon_kib=int(g.balloon_cur), target_kib=int(g.balloon_target), max_kib=int(g.max_kib),
        min_kib=int(g.spec.min_mib * 1024), resident_kib=int(g.footprint), host_swap_kib=int(host_swap_kib),
        swap_kib=int(g.swap_used), page_cache_kib=int(g.cache),
        stall_seconds_total=g.swap_in / _SWAPIN_KIB_PER_S, major_faults_total=int(g.major_fault),
        swap_in_kib_total=int(g.swap_in), oom_kills_total=0, killed_by_host=False)
