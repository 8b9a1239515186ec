"""Generated snapshots: plausible host and guest histories for tests, benchmarks
and trying a policy with `momctl policy run`.

The rows have every field MOM's collectors provide (HostMemory, HostKSM,
HostCpu, HostPressure, HostTime; GuestMemory, GuestBalloon, GuestCpuTune,
GuestIoTune, GuestQemuProc), so every policy in MOM's and vdsm's sets finds
what it reads. ``trial_snapshot`` cuts them down to the fields a daemon's
collectors provide, for the trial evaluation of a policy before the first tick.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from typing import Any

from mom.policy.snapshot import EntityData, Snapshot

GiB_KIB = 1024 * 1024


def _io_entry(rng: random.Random, name: str) -> dict[str, Any]:
    def limits(scale: int) -> dict[str, int]:
        return {"total_bytes_sec": scale * 1_000_000, "read_bytes_sec": scale * 600_000,
                "write_bytes_sec": scale * 400_000, "total_iops_sec": scale * 100,
                "read_iops_sec": scale * 60, "write_iops_sec": scale * 40}
    return {"name": name, "path": f"/var/lib/libvirt/images/{name}.qcow2",
            "guaranteed": limits(1), "maximum": limits(rng.choice((2, 5, 10))),
            "current": limits(rng.choice((0, 2)))}


# A fixed moment for the time fields, so generated snapshots are reproducible.
_TIME = {"time": 1_700_000_000.0, "time_year": 2023, "time_month": 11, "time_day": 14, "time_hour": 22,
         "time_minute": 13, "time_second": 20, "time_microsecond": 0}
_PRESSURE_FIELDS = tuple(f"mem_pressure_{kind}_{what}" for kind in ("some", "full")
                         for what in ("avg10", "avg60", "avg300", "total"))

# The value a field the generator does not know gets in a trial snapshot: a
# number, as nearly every statistic is, and not 0, which policies divide by.
UNKNOWN_FIELD_VALUE = 1


def generate_snapshot(guests: int, rows: int = 10, pressure: bool = False, seed: int = 0,
                      ksm_shared: bool = True) -> Snapshot:
    """A host with ``guests`` guests and ``rows`` history rows each.

    Under ``pressure`` the host's free memory is about 10% of its total (the
    usual balloon policies shrink guests); otherwise about 60% (they grow them).
    """
    rng = random.Random(seed)
    host_total = max(16, guests * 2) * GiB_KIB
    free_fraction = 0.10 if pressure else 0.60
    host_rows = []
    for _ in range(rows):
        free = int(host_total * free_fraction * rng.uniform(0.9, 1.1))
        host_rows.append({
            "mem_available": host_total, "mem_unused": free // 2, "mem_free": free,
            "swap_in": 0, "swap_out": 0, "anon_pages": host_total - free, "swap_total": 8 * GiB_KIB,
            "swap_usage": 0, "ksm_run": 1, "ksm_pages_to_scan": 100, "ksm_sleep_millisecs": 20,
            "ksm_merge_across_nodes": 1, "ksm_pages_shared": 1000 if ksm_shared else 0,
            "ksm_pages_sharing": 5000 if ksm_shared else 0, "ksm_pages_unshared": 0,
            "ksm_pages_volatile": 0, "ksm_full_scans": 3, "ksm_shareable": host_total // 4,
            "ksmd_cpu_usage": 1, "cpu_count": 16, "mem_available_kernel": free + host_total // 20,
            **{f: (0.0 if pressure is False else 12.5) if not f.endswith("total") else 1000
               for f in _PRESSURE_FIELDS},
            **_TIME,
        })
    snap = Snapshot(EntityData({"name": "host"}, host_rows), [])
    for i in range(guests):
        maximum = rng.choice((1, 2, 4, 8)) * GiB_KIB
        cur = int(maximum * rng.uniform(0.6, 1.0)) if rng.random() < 0.7 else maximum
        used = int(cur * rng.uniform(0.2, 0.8))
        grows: list[dict[str, Any]] = []
        for _ in range(rows):
            unused = max(0, cur - used - int(rng.uniform(0, 0.05) * cur))
            grows.append({
                "mem_available": cur, "mem_unused": unused, "mem_free": unused + cur // 10,
                "major_fault": 10, "minor_fault": 1000, "swap_in": 0, "swap_out": 0,
                "swap_total": GiB_KIB, "swap_usage": 0,
                "balloon_cur": cur, "balloon_max": maximum, "balloon_min": maximum // 4,
                "vcpu_quota": -1, "vcpu_period": 100000,
                "vcpu_user_limit": rng.choice((100, 100, 50, 25)), "vcpu_count": rng.choice((1, 2, 4)),
                "mem_usable": unused + cur // 20, "disk_caches": cur // 10,
                "rss": cur // 4, "host_major_faults": 0, "host_minor_faults": 100,
            })
        tune = _io_entry(rng, "vda")
        grows[-1]["io_tune"] = [tune]
        grows[-1]["io_tune_current"] = [{"name": tune["name"], "path": tune["path"],
                                         "current": dict(tune["current"])}]
        snap.guests.append(EntityData({"name": f"vm{i:04d}", "uuid": f"00000000-0000-4000-8000-{i:012d}",
                                       "pid": 10000 + i}, grows))
    return snap


def trial_snapshot(host_fields: Iterable[str] | None = None, guest_fields: Iterable[str] | None = None,
                   guests: int = 8) -> Snapshot:
    """A generated snapshot (host under memory pressure, so the balloon
    policies take their busiest path) with exactly the given fields: those the
    generator does not know get UNKNOWN_FIELD_VALUE. None keeps every field."""
    snap = generate_snapshot(guests, pressure=True, seed=1)
    _keep(snap.host, host_fields)
    for g in snap.guests:
        _keep(g, guest_fields)
    return snap


def _keep(entity: EntityData, fields: Iterable[str] | None) -> None:
    if fields is None:
        return
    wanted = list(fields)
    entity.statistics = [{f: row.get(f, UNKNOWN_FIELD_VALUE) for f in wanted} for row in entity.statistics]
