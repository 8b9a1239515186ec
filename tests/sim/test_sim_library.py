"""The scenario library (bench/scenarios) loads and runs, and each file shows
what it is there for."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from mom.sim.model import SimModel
from mom.sim.scenario import load_scenario

LIBRARY = Path(__file__).resolve().parents[2] / "bench" / "scenarios"
NAMES = ["boot-storm", "burst-storm", "daily-cycle", "free-page-reporting", "guest-churn", "host-hog",
         "identical-guests", "no-balloon-driver", "ramp", "stale-statistics", "steady-overcommit", "step",
         "stuck-balloon", "trace-host", "virtio-mem"]


def test_the_library_has_every_scenario_the_benchmark_needs():
    assert sorted(p.stem for p in LIBRARY.glob("*.toml")) == NAMES


@pytest.mark.parametrize("name", NAMES)
def test_each_scenario_loads_and_runs_ten_minutes(name):
    sc = load_scenario(LIBRARY / f"{name}.toml")
    assert sc.name == name
    m = SimModel(sc)
    m.advance_to(600)
    obs = m.observe()
    assert obs.time == 600 and len(obs.guests) == len(sc.guests)


def test_the_features_are_used():
    lib = {n: load_scenario(LIBRARY / f"{n}.toml") for n in NAMES}
    assert lib["host-hog"].processes
    assert any(g.balloon_stuck_at for g in lib["stuck-balloon"].guests)
    assert any(g.balloon_speed < 1 for g in lib["stuck-balloon"].guests)
    assert any(g.stats_stop for g in lib["stale-statistics"].guests)
    assert any(not g.balloon_driver for g in lib["no-balloon-driver"].guests)
    assert len({g.image for g in lib["identical-guests"].guests}) == 1
    assert all(g.workload.type == "trace" for g in lib["trace-host"].guests)
    assert sum(1 for g in lib["guest-churn"].guests if g.stop) >= 10
    assert sum(1 for g in lib["boot-storm"].guests if g.start > 0) >= 8
    assert all(g.free_page_reporting for g in lib["free-page-reporting"].guests)
    others = [n for n in NAMES if n not in ("free-page-reporting", "virtio-mem")]
    # the others are as the effectiveness figures were measured
    assert not any(g.free_page_reporting or g.virtio_mem for n in others for g in lib[n].guests)
    # free-page-reporting is daily-cycle with reporting on: the same guests otherwise
    fpr, daily = lib["free-page-reporting"], lib["daily-cycle"]
    assert (fpr.host, fpr.seed) == (daily.host, daily.seed)
    assert [dataclasses.replace(g, free_page_reporting=False, uuid="") for g in fpr.guests] == [
        dataclasses.replace(g, uuid="") for g in daily.guests]
    assert all(g.virtio_mem and g.virtio_mem.requested_kib > 0 for g in lib["virtio-mem"].guests)
