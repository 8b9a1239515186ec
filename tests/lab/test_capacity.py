"""Capacity mode: copies of a template guest until the stall budget breaks."""

from __future__ import annotations

from pathlib import Path

import pytest

from lab.conftest import TINY, json_lines, momctl
from mom.lab.bench import LabError, _Search, with_copies
from mom.sim.scenario import loads_scenario

ROOMY = """\
name = "roomy"
seed = 2
[host]
memory = 8192
swap = 1024
base_used = 256
[[guest]]
name = "web"
max = 1024
min = 256
workload = { type = "steady", level = 300 }
"""


def test_copies_of_the_template_get_their_own_names_and_uuids():
    scenario = loads_scenario(TINY, "tiny.toml")
    more = with_copies(scenario, "b", 3)
    assert [g.name for g in more.guests] == ["a", "b", "b-c1", "b-c2", "b-c3"]
    assert len({g.uuid for g in more.guests}) == 5
    assert all(g.max_mib == 1536 and g.workload == scenario.guests[1].workload for g in more.guests[2:])
    with pytest.raises(LabError, match="no guest 'zz'"):
        with_copies(scenario, "zz", 1)


@pytest.mark.parametrize("limit_held, cap, expect", [(11, 64, 11), (3, 64, 3), (2, 64, None), (100, 20, 20)])
def test_search_doubles_then_bisects_to_the_most_guests_held(limit_held, cap, expect):
    search = _Search(base=3, limit=cap)
    tried = []
    while (n := search.next_count()) is not None:
        tried.append(n)
        search.probes[n] = n <= limit_held
    assert search.most() == expect
    assert len(tried) <= 2 * 6 + 2  # logarithmic, not one run per guest count


def test_capacity_reports_the_most_guests_each_policy_held(tmp_path: Path):
    scenario = tmp_path / "roomy.toml"
    scenario.write_text(ROOMY)
    out = tmp_path / "cap.jsonl"
    r = momctl("bench", "--capacity", "--scenario", str(scenario), "--policy", "none=", "doc=doc/policies",
               "--stall-budget", "1e9", "--max-guests", "4", "--hours", "0.02", "--json", str(out), "-q")
    assert r.returncode == 0, r.stderr
    rows = {row["policy"]: row for row in json_lines(out)}
    assert rows["none"]["most_guests"] == 4 and rows["doc"]["most_guests"] == 4
    assert rows["none"]["probes"] == {"1": True, "2": True, "3": True, "4": True}  # copies 0, 1, 2, then the cap
    assert "| none | 4 |" in r.stdout


def test_capacity_needs_a_budget(tmp_path: Path):
    scenario = tmp_path / "roomy.toml"
    scenario.write_text(ROOMY)
    r = momctl("bench", "--capacity", "--scenario", str(scenario), "--policy", "none=")
    assert r.returncode == 2 and "--stall-budget" in r.stderr


def _die(spec) -> None:
    import os
    import signal
    os.kill(os.getpid(), signal.SIGKILL)


def test_a_worker_that_dies_is_a_failed_run_not_a_traceback(tmp_path: Path, monkeypatch):
    """A run whose process is killed (the OOM killer, a crash) fails the bench with one line."""
    from mom.lab import bench
    from mom.lab.bench import RunFailed, plan_runs, run_many
    from mom.lab.runner import PolicySpec

    monkeypatch.setattr(bench, "_run_one", _die)  # the workers fork with it
    specs = plan_runs([bench.ScenarioEntry("roomy", loads_scenario(ROOMY, "roomy.toml"))], [PolicySpec("none")],
                      2, 0.01)
    with pytest.raises(RunFailed, match="worker process died"):
        run_many(specs, jobs=2)
