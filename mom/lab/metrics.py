"""What a run did to the guests and the host, from the simulator's observations.

:class:`RunMetrics` is fed one :class:`~mom.sim.observation.HostObservation`
per sample (every few simulated seconds) and sums up, for the whole run:

- stall seconds per guest (the guests' own figure, from the simulator), and
  the part of them spent on faults of pages in host swap;
- host swap: peak MiB and MiB*s; host and guest OOM kills;
- seconds with the host's MemAvailable below 10% of its RAM, and how long each
  such episode lasted (*relief time*: from the moment the host falls below until
  it is back above for a minute; an episode still open at the end counts up to
  the end);
- memory reclaimed: what balloons hold below the guests' maximum, plus the
  part of their virtio-mem regions left unplugged, plus what KSM saves
  (time-weighted mean, peak);
- balloon activity: target changes, MiB moved, direction reversals;
- seconds a guest was below its guarantee (min), or its balloon or balloon
  target above its maximum;
- *give-back time*: how long a guest whose workload wants more than it has
  (and which is below its maximum) waits until its balloon and virtio-mem
  cover the demand, or it reaches its maximum, for a minute.

Where a figure needs a guest's size it is what the guest sees: its balloon
plus its plugged virtio-mem; its maximum is its boot memory plus its virtio-mem
region (for a guest without a device, the balloon and the boot memory alone).

Levels (swap, free memory, balloons) are sampled, so their integrals are sums
of sample value x interval; totals the simulator keeps (stall seconds, OOM
kills) are exact.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mom.sim.observation import GuestObservation, HostObservation

MIB = 1024
LOW_FREE_SHARE = 0.10     # "host free below 10%": MemAvailable / MemTotal
MOVE_NOISE_KIB = 1024     # balloon moves smaller than this are not a direction
VIOLATION_SLACK_KIB = 1024  # rounding of targets in KiB is not a violation
EPISODE_GAP_S = 60.0      # a condition back within this is the same episode


@dataclass
class _Episodes:
    """Durations of intervals during which a condition held. A condition that holds
    again within EPISODE_GAP_S of ending continues the same episode: a guest whose
    OOM killer freed memory for a moment, or a host back over the line for one
    sample, has not been relieved."""

    started: float | None = None
    ended: float | None = None     # the last episode's end, while it may still resume
    durations: list[float] = field(default_factory=list)

    def update(self, holds: bool, now: float) -> None:
        if holds:
            if self.started is None:
                self.started = now
            self.ended = None
        elif self.started is not None:
            if self.ended is None:
                self.ended = now
            elif now - self.ended >= EPISODE_GAP_S:
                self.durations.append(self.ended - self.started)
                self.started = self.ended = None

    def close(self, now: float) -> list[float]:
        """Every duration, an open episode counted up to now (or its end)."""
        if self.started is None:
            return list(self.durations)
        return self.durations + [(self.ended if self.ended is not None else now) - self.started]


@dataclass
class _GuestTally:
    stall_s: float = 0.0
    host_stall_s: float = 0.0
    oom_kills: int = 0
    killed_by_host: bool = False
    target_changes: int = 0
    moved_kib: float = 0.0
    reversals: int = 0
    below_min_s: float = 0.0
    above_max_s: float = 0.0
    last_balloon: int | None = None
    last_target: int | None = None
    last_direction: int = 0
    wanting: _Episodes = field(default_factory=_Episodes)


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else 0.0


class RunMetrics:
    """Accumulates one run's figures from its observations (in time order)."""

    def __init__(self, keep_series: bool = False) -> None:
        self.keep_series = keep_series
        self.series: dict[str, Any] = {"time": [], "host": {}, "guests": {}}
        self._last_time: float | None = None
        self._first_time = 0.0
        self._guests: dict[str, _GuestTally] = {}
        self._swap_peak_kib = 0
        self._swap_kib_s = 0.0
        self._low_free_s = 0.0
        self._low_free = _Episodes()
        self._reclaimed_kib_s = 0.0
        self._reclaimed_peak_kib = 0
        self._ksm_kib_s = 0.0
        self._host_oom = 0
        self._now = 0.0

    def add(self, obs: HostObservation) -> None:
        """Take one observation (later than the previous one)."""
        dt = 0.0 if self._last_time is None else obs.time - self._last_time
        if self._last_time is None:
            self._first_time = obs.time
        self._last_time = self._now = obs.time
        self._swap_peak_kib = max(self._swap_peak_kib, obs.swap_used_kib)
        self._swap_kib_s += obs.swap_used_kib * dt
        low = obs.available_kib < LOW_FREE_SHARE * obs.ram_kib
        if low:
            self._low_free_s += dt
        self._low_free.update(low, obs.time)
        running = [g for g in obs.guests if g.running]
        ballooned = sum(max(0, g.max_kib - g.balloon_kib) for g in running)
        unplugged = sum(g.virtio_mem_max_kib - g.virtio_mem_kib for g in running)  # 0 without a device
        reclaimed = ballooned + unplugged + obs.ksm_saved_kib
        self._reclaimed_kib_s += reclaimed * dt
        self._ksm_kib_s += obs.ksm_saved_kib * dt
        self._reclaimed_peak_kib = max(self._reclaimed_peak_kib, reclaimed)
        self._host_oom = obs.oom_kills_total
        for g in obs.guests:
            self._guest(g, dt)
        if self.keep_series:
            self._record(obs)

    def _guest(self, g: GuestObservation, dt: float) -> None:
        t = self._guests.setdefault(g.name, _GuestTally())
        t.stall_s = g.stall_seconds_total
        t.host_stall_s = g.host_stall_seconds_total
        t.oom_kills = g.oom_kills_total
        t.killed_by_host = t.killed_by_host or g.killed_by_host
        if not g.running:
            t.wanting.update(False, self._now)
            t.last_balloon = None
            return
        if t.last_target is not None and g.target_kib != t.last_target:
            t.target_changes += 1
        t.last_target = g.target_kib
        if t.last_balloon is not None:
            move = g.balloon_kib - t.last_balloon
            t.moved_kib += abs(move)
            if abs(move) >= MOVE_NOISE_KIB:
                direction = 1 if move > 0 else -1
                if t.last_direction and direction != t.last_direction:
                    t.reversals += 1
                t.last_direction = direction
        t.last_balloon = g.balloon_kib
        # The guest's size and maximum: plugged virtio-mem counts (0 without a device).
        size = g.balloon_kib + g.virtio_mem_kib
        largest = g.max_kib + g.virtio_mem_max_kib
        if size < g.min_kib - VIOLATION_SLACK_KIB:
            t.below_min_s += dt
        if g.balloon_kib > g.max_kib + VIOLATION_SLACK_KIB or g.target_kib > g.max_kib + VIOLATION_SLACK_KIB:
            t.above_max_s += dt
        t.wanting.update(g.demand_kib > size and size < largest - VIOLATION_SLACK_KIB, self._now)

    def _record(self, obs: HostObservation) -> None:
        s = self.series
        s["time"].append(obs.time)
        running = [g for g in obs.guests if g.running]
        resident = sum(g.resident_kib for g in running)  # in RAM: host-swapped pages are not resident
        host = {
            "ram": obs.ram_kib / MIB,
            "guests": max(0.0, (resident - obs.ksm_saved_kib) / MIB),
            "host_processes": obs.host_processes_kib / MIB,
            "free": obs.free_kib / MIB,
            "available": obs.available_kib / MIB,
            "swap": obs.swap_used_kib / MIB,
            "ksm_saved": obs.ksm_saved_kib / MIB,
        }
        n = len(s["time"])
        for key, value in host.items():
            s["host"].setdefault(key, []).append(value)
        for g in obs.guests:
            rows = s["guests"].setdefault(g.name, {k: [None] * (n - 1) for k in _GUEST_SERIES})
            for key in _GUEST_SERIES:
                rows[key].append(getattr(g, f"{key}_kib") / MIB if g.running else None)

    def result(self) -> dict[str, Any]:
        """The run's figures as plain JSON values (MiB, seconds, counts)."""
        span = max(0.0, self._now - self._first_time)
        guests = self._guests
        relief = self._low_free.close(self._now)
        giveback = [d for t in guests.values() for d in t.wanting.close(self._now)]
        return {
            "stall_s": round(sum(t.stall_s for t in guests.values()), 3),
            "stall_s_worst_guest": round(max((t.stall_s for t in guests.values()), default=0.0), 3),
            "stall_s_per_guest": {n: round(t.stall_s, 3) for n, t in sorted(guests.items())},
            "stall_s_host_swap": round(sum(t.host_stall_s for t in guests.values()), 3),
            "host_swap_peak_mib": round(self._swap_peak_kib / MIB, 1),
            "host_swap_mib_s": round(self._swap_kib_s / MIB, 1),
            "host_oom_kills": self._host_oom,
            "guest_oom_kills": sum(t.oom_kills for t in guests.values()),
            "guests_killed_by_host": sorted(n for n, t in guests.items() if t.killed_by_host),
            "low_free_s": round(self._low_free_s, 1),
            "reclaimed_mean_mib": round(self._reclaimed_kib_s / span / MIB, 1) if span else 0.0,
            "reclaimed_peak_mib": round(self._reclaimed_peak_kib / MIB, 1),
            "ksm_saved_mean_mib": round(self._ksm_kib_s / span / MIB, 1) if span else 0.0,
            "balloon_changes": sum(t.target_changes for t in guests.values()),
            "balloon_moved_mib": round(sum(t.moved_kib for t in guests.values()) / MIB, 1),
            "balloon_reversals": sum(t.reversals for t in guests.values()),
            "below_min_s": round(sum(t.below_min_s for t in guests.values()), 1),
            "above_max_s": round(sum(t.above_max_s for t in guests.values()), 1),
            "relief_episodes": len(relief),
            "relief_s_mean": round(_mean(relief), 1),
            "relief_s_max": round(max(relief, default=0.0), 1),
            "giveback_episodes": len(giveback),
            "giveback_s_mean": round(_mean(giveback), 1),
            "giveback_s_max": round(max(giveback, default=0.0), 1),
        }


_GUEST_SERIES = ("demand", "balloon", "resident", "swap", "host_swap")
