"""RunMetrics: the run's figures from hand-made observations (KiB, seconds)."""

from __future__ import annotations

import dataclasses

from mom.lab.metrics import RunMetrics
from mom.sim.observation import GuestObservation, HostObservation

MIB = 1024
RAM = 4096 * MIB


def guest(**kw) -> GuestObservation:
    base = dict(name="g", running=True, demand_kib=500 * MIB, working_set_kib=400 * MIB, balloon_kib=1024 * MIB,
                target_kib=1024 * MIB, max_kib=1024 * MIB, min_kib=256 * MIB, resident_kib=600 * MIB,
                host_swap_kib=0, swap_kib=0, page_cache_kib=0, stall_seconds_total=0.0, major_faults_total=0,
                swap_in_kib_total=0, oom_kills_total=0, killed_by_host=False)
    base.update(kw)
    return GuestObservation(**base)


def host(t: float, guests: list[GuestObservation] | None = None, **kw) -> HostObservation:
    base = dict(time=t, ram_kib=RAM, free_kib=2048 * MIB, available_kib=2048 * MIB, swap_used_kib=0,
                ksm_saved_kib=0, psi_some_total_us=0, oom_kills_total=0, host_processes_kib=0,
                guests=tuple(guests or [guest()]))
    base.update(kw)
    return HostObservation(**base)


def figures(observations: list[HostObservation]) -> dict:
    m = RunMetrics()
    for o in observations:
        m.add(o)
    return m.result()


def test_host_swap_peak_and_integral():
    f = figures([host(0), host(5, swap_used_kib=100 * MIB), host(10, swap_used_kib=300 * MIB), host(15)])
    assert f["host_swap_peak_mib"] == 300
    assert f["host_swap_mib_s"] == 100 * 5 + 300 * 5  # each sample holds over the interval before it


def test_low_free_seconds_and_relief_episodes():
    low = 300 * MIB  # under 10% of 4 GiB
    f = figures([host(0), host(5, available_kib=low), host(10, available_kib=low), host(15), host(20),
                 host(25, available_kib=low), host(30), host(95),   # back under within a minute: one episode
                 host(100, available_kib=low), host(105, available_kib=low)])
    assert f["low_free_s"] == 25
    # first episode: 5..30 (relieved for good at 30), second: 100..105 still open at the end
    assert f["relief_episodes"] == 2
    assert f["relief_s_max"] == 25
    assert f["relief_s_mean"] == 15


def test_stall_and_oom_come_from_the_simulators_totals():
    f = figures([host(0, [guest(name="a"), guest(name="b")]),
                 host(5, [guest(name="a", stall_seconds_total=2.5, host_stall_seconds_total=1.0),
                          guest(name="b", stall_seconds_total=4.0, oom_kills_total=1)], oom_kills_total=1),
                 host(10, [guest(name="a", stall_seconds_total=3.0, host_stall_seconds_total=1.5),
                           guest(name="b", running=False, stall_seconds_total=4.0, oom_kills_total=1,
                                 killed_by_host=True)], oom_kills_total=1)])
    assert f["stall_s"] == 7.0
    assert f["stall_s_worst_guest"] == 4.0
    assert f["stall_s_per_guest"] == {"a": 3.0, "b": 4.0}
    assert f["stall_s_host_swap"] == 1.5  # the part of a's stall spent on its pages in host swap
    assert (f["host_oom_kills"], f["guest_oom_kills"]) == (1, 1)
    assert f["guests_killed_by_host"] == ["b"]


def test_balloon_changes_moves_and_reversals():
    sizes = [1024, 900, 800, 800, 950, 700]  # down, down, still, up (reversal), down (reversal)
    targets = [1024, 800, 800, 800, 1024, 700]
    obs = [host(5 * i, [guest(balloon_kib=s * MIB, target_kib=t * MIB)])
           for i, (s, t) in enumerate(zip(sizes, targets, strict=True))]
    f = figures(obs)
    assert f["balloon_moved_mib"] == 124 + 100 + 0 + 150 + 250
    assert f["balloon_reversals"] == 2
    assert f["balloon_changes"] == 3  # 1024->800, 800->1024, 1024->700


def test_reclaimed_is_balloons_below_max_plus_ksm():
    f = figures([host(0, [guest(balloon_kib=1024 * MIB)]),
                 host(10, [guest(balloon_kib=768 * MIB)], ksm_saved_kib=100 * MIB)])
    assert f["reclaimed_peak_mib"] == 256 + 100
    assert f["reclaimed_mean_mib"] == 356  # the one interval (0, 10] holds the later sample
    assert f["ksm_saved_mean_mib"] == 100


def test_guarantee_violations_are_seconds_below_min_or_above_max():
    f = figures([host(0), host(5, [guest(balloon_kib=200 * MIB)]), host(10, [guest(balloon_kib=100 * MIB)]),
                 host(15, [guest(target_kib=2048 * MIB)])])
    assert f["below_min_s"] == 10
    assert f["above_max_s"] == 5


def test_giveback_time_is_how_long_a_guest_wants_more_than_its_balloon():
    g = dict(max_kib=2048 * MIB)
    wants, killed, covered = (dict(demand_kib=1500 * MIB, balloon_kib=1024 * MIB, **g),
                              dict(demand_kib=300 * MIB, balloon_kib=1024 * MIB, **g),
                              dict(demand_kib=1500 * MIB, balloon_kib=1600 * MIB, **g))
    f = figures([host(0, [guest(demand_kib=500 * MIB, balloon_kib=1024 * MIB, **g)]),
                 host(5, [guest(**wants)]),
                 host(10, [guest(**killed)]),     # its OOM killer freed memory: it still wants more
                 host(15, [guest(**wants)]),
                 host(30, [guest(**covered)]),
                 host(95, [guest(**covered)]),
                 # at its maximum a guest cannot be given more: not an episode
                 host(100, [guest(demand_kib=2500 * MIB, balloon_kib=2048 * MIB, **g)])])
    assert f["giveback_episodes"] == 1
    assert f["giveback_s_max"] == 25


def test_virtio_mem_counts_in_the_guests_size_and_its_unplugged_region_is_reclaimed():
    device = dict(virtio_mem_max_kib=2048 * MIB)  # boot memory 1 GiB plus a 2 GiB region
    f = figures([host(0, [guest(virtio_mem_kib=2048 * MIB, **device)]),
                 host(10, [guest(balloon_kib=768 * MIB, virtio_mem_kib=512 * MIB, **device)])])
    assert f["reclaimed_peak_mib"] == 256 + 1536  # the balloon's 256 MiB and 1.5 GiB left unplugged
    assert f["reclaimed_mean_mib"] == 1792


def test_plugged_virtio_mem_keeps_a_guest_above_its_guarantee():
    device = dict(virtio_mem_max_kib=1024 * MIB)
    f = figures([host(0), host(5, [guest(balloon_kib=100 * MIB, virtio_mem_kib=512 * MIB, **device)]),
                 host(10, [guest(balloon_kib=100 * MIB, virtio_mem_kib=0, **device)])])
    assert f["below_min_s"] == 5  # 612 MiB is above the 256 MiB guarantee; 100 MiB is not


def test_giveback_counts_plugged_virtio_mem_and_the_region_in_the_maximum():
    device = dict(max_kib=1024 * MIB, virtio_mem_max_kib=2048 * MIB)
    # wants 2 GiB with a full balloon: at its boot memory's maximum, yet the region can give more
    wants = dict(demand_kib=2048 * MIB, balloon_kib=1024 * MIB, virtio_mem_kib=0, **device)
    covered = dict(demand_kib=2048 * MIB, balloon_kib=1024 * MIB, virtio_mem_kib=1536 * MIB, **device)
    f = figures([host(0, [guest(**device)]), host(5, [guest(**wants)]), host(20, [guest(**covered)]),
                 host(90, [guest(**covered)])])
    assert f["giveback_episodes"] == 1
    assert f["giveback_s_max"] == 15


def test_series_kept_only_when_asked():
    m = RunMetrics(keep_series=True)
    m.add(host(0))
    m.add(host(5, [dataclasses.replace(guest(), balloon_kib=512 * MIB)]))
    assert m.series["time"] == [0, 5]
    assert m.series["guests"]["g"]["balloon"] == [1024, 512]
    assert RunMetrics().series["time"] == []
