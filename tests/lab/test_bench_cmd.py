"""momctl bench as a user runs it: tables, JSON lines, plots, same numbers for
the same seed, one clear line for bad input."""

from __future__ import annotations

from pathlib import Path

import pytest

from lab.conftest import REPO, figures, json_lines, momctl
from tests.support.shared_policies import SHARED_POLICIES

HOURS = "0.05"  # three simulated minutes a run


def test_runs_every_scenario_policy_and_seed_and_writes_json_and_plots(tiny: Path, tmp_path: Path):
    out, plots = tmp_path / "runs.jsonl", tmp_path / "plots"
    r = momctl("bench", "--scenario", str(tiny), "--policy", "none=", "doc=doc/policies", "--seeds", "2",
               "--hours", HOURS, "--json", str(out), "--plots", str(plots))
    assert r.returncode == 0, r.stderr
    rows = json_lines(out)
    assert sorted((row["policy"], row["seed"]) for row in rows) == [("doc", 5), ("doc", 6), ("none", 5), ("none", 6)]
    assert all(row["scenario"] == "tiny" and row["guests"] == 2 and row["hours"] == 0.05 for row in rows)
    doc = next(row for row in rows if row["policy"] == "doc")
    none = next(row for row in rows if row["policy"] == "none")
    assert none["balloon_changes"] == 0 and none["balloon_moved_mib"] == 0
    assert doc["balloon_changes"] > 0 and doc["balloon_moved_mib"] > 0  # the sample policy balloons
    # the table: a row per policy under a heading per scenario
    assert "### tiny" in r.stdout
    assert any(line.startswith("| none |") for line in r.stdout.splitlines())
    assert any(line.startswith("| doc |") for line in r.stdout.splitlines())
    # plots of each policy's first seed, as PNG
    pngs = sorted(p.name for p in plots.iterdir())
    assert pngs == ["tiny--doc--seed5--guests.png", "tiny--doc--seed5--host.png",
                    "tiny--none--seed5--guests.png", "tiny--none--seed5--host.png"]
    assert all((plots / p).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)
    # off a terminal the progress is a plain line per run
    assert r.stderr.count("bench: ") >= 4


def test_same_seed_gives_the_same_numbers_in_one_process_or_several(tiny: Path, tmp_path: Path):
    runs = []
    for i, jobs in enumerate(("1", "2")):
        out = tmp_path / f"runs{i}.jsonl"
        r = momctl("bench", "--scenario", str(tiny), "--policy", "doc=doc/policies", "none=", "--hours", HOURS,
                   "--jobs", jobs, "--json", str(out), "-q")
        assert r.returncode == 0, r.stderr
        runs.append([figures(row) for row in json_lines(out)])
    assert runs[0] == runs[1]
    assert runs[0][0]["balloon_moved_mib"] > 0  # the numbers compared are not all zero


def test_bad_scenario_is_one_line_and_exit_2(tiny: Path, tmp_path: Path):
    bad = tmp_path / "bad.toml"
    bad.write_text(tiny.read_text().replace("[host]", "[host]\nmemroy = 4096"))
    for path in (bad, tmp_path / "missing.toml"):
        r = momctl("bench", "--scenario", str(path), "--policy", "none=", "--hours", HOURS)
        assert r.returncode == 2
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("momctl bench: "), r.stderr
        assert str(path) in lines[0]
    assert "memroy" in momctl("bench", "--scenario", str(bad), "--policy", "none=").stderr


def test_bad_policy_is_one_line_and_exit_2(tiny: Path, tmp_path: Path):
    broken = tmp_path / "broken.policy"
    broken.write_text("(with Guests vm (vm.Control \"balloon_targt\" 1))\n")
    empty = tmp_path / "empty"
    empty.mkdir()
    cases = {f"x={broken}": "balloon_targt", f"y={tmp_path / 'nope.policy'}": "nope.policy",
             f"z={empty}": "no *.policy"}
    for arg, said in cases.items():
        r = momctl("bench", "--scenario", str(tiny), "--policy", arg, "--hours", HOURS)
        assert r.returncode == 2
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("momctl bench: policy "), r.stderr
        assert said in lines[0]
        assert "Traceback" not in r.stderr


@pytest.mark.skipif(not (SHARED_POLICIES / "vdsm").is_dir(), reason=f"{SHARED_POLICIES / 'vdsm'} is not available")
def test_named_parameter_policies_load_with_a_set(tiny: Path, tmp_path: Path):
    """vdsm's set balloons only once its 01-parameters policy turns ballooning on."""
    vdsm = SHARED_POLICIES / "vdsm"
    out = tmp_path / "runs.jsonl"
    r = momctl("bench", "--scenario", str(tiny), "--policy", f"vdsm={vdsm}",
               f"vdsm-on={vdsm}+bench/policies/vdsm-enable", "--hours", "0.1", "--json", str(out), "-q")
    assert r.returncode == 0, r.stderr
    rows = {row["policy"]: row for row in json_lines(out)}
    assert rows["vdsm"]["balloon_changes"] == 0
    assert rows["vdsm-on"]["balloon_changes"] > 0


def test_baselines_are_found_in_the_source_tree(tiny: Path, tmp_path: Path):
    out = tmp_path / "runs.jsonl"
    r = momctl("bench", "--scenario", str(tiny), "--baselines", "--hours", HOURS, "--json", str(out), "-q",
               cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert [row["policy"] for row in json_lines(out)] == ["none", "default", "sample", "proxmox", "squeezed"]
    assert all(row["policy_errors"] == 0 for row in json_lines(out))
    assert REPO.joinpath("bench/policies/proxmox.policy").is_file()


def test_a_scenario_directory_stands_for_its_toml_files(tiny: Path, tmp_path: Path):
    lib = tmp_path / "lib"
    lib.mkdir()
    for name in ("b-step", "a-steady"):
        (lib / f"{name}.toml").write_text(tiny.read_text())
    (lib / "notes.txt").write_text("not a scenario")
    out = tmp_path / "runs.jsonl"
    r = momctl("bench", "--scenario", str(lib), "--policy", "none=", "--hours", HOURS, "--json", str(out), "-q")
    assert r.returncode == 0, r.stderr
    assert [row["scenario"] for row in json_lines(out)] == ["a-steady", "b-step"]
    empty = tmp_path / "empty"
    empty.mkdir()
    r = momctl("bench", "--scenario", str(empty), "--policy", "none=")
    assert r.returncode == 2 and r.stderr.strip() == f"momctl bench: no *.toml scenario files in {empty}"


def test_progress_is_a_bar_on_a_terminal(tiny: Path, tmp_path: Path):
    """On a terminal rich draws a bar (then removes it); the table still goes to stdout."""
    import os
    import pty
    import select
    import subprocess
    import sys

    main, side = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "mom.cli.momctl", "bench", "--scenario", str(tiny), "--policy",
                             "none=", "--seeds", "3", "--hours", HOURS, "--jobs", "1"],
                            cwd=REPO, stdin=side, stdout=side, stderr=side, env={**os.environ, "COLUMNS": "120"})
    os.close(side)
    seen = b""
    while True:
        ready, _, _ = select.select([main], [], [], 60)
        if not ready:
            break
        try:
            chunk = os.read(main, 65536)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        seen += chunk
    assert proc.wait(60) == 0
    os.close(main)
    text = seen.decode(errors="replace")
    assert "━" in text and "3/3" in text   # the bar and its count
    assert "bench: 1/3" not in text        # not the plain lines
    assert "| none |" in text


ELASTIC = """\
name = "elastic"
seed = 3
[host]
memory = 4096
[[guest]]
name = "a"
max = 1024
min = 512
workload = { type = "steady", level = 400, noise = 10 }
[guest.virtio_mem]
max = "1G"
block = "2M"
requested = "1G"
[[guest]]
name = "plain"
max = 1024
min = 512
workload = { type = "steady", level = 400, noise = 10 }
"""
UNPLUG = '(with Guests g (if (valid g.virtio_mem_size) (g.Control "mem_requested_size" 262144) 0))'


def test_a_bench_policy_drives_virtio_mem_and_the_unplugged_memory_is_reclaimed(tmp_path: Path):
    scenario, policy, out = tmp_path / "elastic.toml", tmp_path / "unplug.policy", tmp_path / "runs.jsonl"
    scenario.write_text(ELASTIC)
    policy.write_text(UNPLUG)  # a guest without a device has virtio_mem_size nil and is left alone
    r = momctl("bench", "--scenario", str(scenario), "--policy", "none=", f"unplug={policy}", "--hours", HOURS,
               "--json", str(out), "-q")
    assert r.returncode == 0, r.stderr
    rows = {row["policy"]: row for row in json_lines(out)}
    assert rows["none"]["reclaimed_peak_mib"] == 0
    assert rows["unplug"]["reclaimed_peak_mib"] == 768  # the device's 1 GiB down to 256 MiB plugged
    assert rows["unplug"]["policy_errors"] == 0 and rows["unplug"]["guest_oom_kills"] == 0


def test_configuration_overrides_are_checked_like_momds(tiny: Path, tmp_path: Path):
    out = tmp_path / "runs.jsonl"
    rows = []
    for interval in ("10", "30"):
        r = momctl("bench", "--scenario", str(tiny), "--policy", "doc=doc/policies", "--hours", "0.1",
                   "--set", f"main.policy-engine-interval={interval}", "--json", str(out), "-q")
        assert r.returncode == 0, r.stderr
        rows.append(json_lines(out)[0])
    assert rows[1]["balloon_changes"] < rows[0]["balloon_changes"]  # fewer policy runs, fewer changes
    for bad, said in (("main.polcy-dir=x", "polcy-dir"), ("main.hypervisor-interface=libvirt", "simulator")):
        r = momctl("bench", "--scenario", str(tiny), "--policy", "none=", "--set", bad)
        assert r.returncode == 2
        assert len(r.stderr.strip().splitlines()) == 1 and said in r.stderr, r.stderr
