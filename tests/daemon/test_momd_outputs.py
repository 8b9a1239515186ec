"""momd for real: plot-dir and flight recorder output, through a full disk and removed
directories; the simulator's temporary tree on every way out; a thread count
that does not grow with guests."""

from __future__ import annotations

import json
import re
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import mom.collectors  # noqa: F401  (fills the registry)
from mom.collectors.base import REGISTRY
from tests.support.momd import (
    POLICIES,
    Momd,
    idle_guests,
    read_records,
    run_momctl,
    run_momd,
    scenario_toml,
    thread_count,
    write_config,
)

HOST_COLLECTORS = ("HostMemory", "HostKSM")
GUEST_COLLECTORS = ("GuestMemory", "GuestBalloon")
# Optional fields the simulator's guests never report (no huge page statistics):
# no column for them in a guest's plot file.
SIM_GUEST_LACKS = {"hugetlb_pgalloc", "hugetlb_pgfail"}


def fields_of(collectors: tuple[str, ...], lacking: set[str] | frozenset[str] = frozenset()) -> list[str]:
    out: set[str] = set()
    for name in collectors:
        out |= REGISTRY[name].fields()
    return sorted(out - lacking)


def check_dat(path: Path, fields: list[str], min_rows: int) -> None:
    lines = path.read_text().splitlines()
    assert lines[0] == "\t".join(["# time", *fields]), lines[0]
    rows = [line.split("\t") for line in lines[1:]]
    assert len(rows) >= min_rows
    times = []
    for row in rows:
        assert len(row) == len(fields) + 1, row
        times.append(float(row[0]))
        assert all(cell != "" for cell, name in zip(row[1:], fields, strict=False) if name != "ksm_merge_across_nodes")
    assert times == sorted(times)


def test_plot_dir(tmp_path: Path) -> None:
    plots = tmp_path / "plots"
    plots.mkdir()
    cfg = write_config(tmp_path, scenario=scenario_toml(idle_guests(2)), policy=None,
                       host_collectors=", ".join(HOST_COLLECTORS), guest_collectors=", ".join(GUEST_COLLECTORS),
                       extra_main=f"plot-dir: {plots}")
    for n in range(2):
        m = Momd(cfg, log_name=f"momd-{n}.log")
        try:
            m.wait_ticks(len(m.records()) + 5)  # five of its own (the last run may have written more than five)
            assert m.stop()[0] == 0
        finally:
            m.close()
        folder = plots / f"momplot-{n:03d}"
        assert sorted(p.name for p in plots.iterdir()) == [f"momplot-{i:03d}" for i in range(n + 1)]
        assert sorted(p.name for p in folder.iterdir()) == ["host.dat", "vm1.dat", "vm2.dat"]
        check_dat(folder / "host.dat", fields_of(HOST_COLLECTORS), 5)
        for guest in ("vm1", "vm2"):
            check_dat(folder / f"{guest}.dat", fields_of(GUEST_COLLECTORS, SIM_GUEST_LACKS), 5)


def test_thread_count_does_not_grow_with_guests(tmp_path: Path) -> None:
    daemons = []
    try:
        for n in (2, 40):
            d = tmp_path / f"g{n}"
            d.mkdir()
            cfg = write_config(d, scenario=scenario_toml(idle_guests(n, max_mib=256, min_mib=64), memory=16384),
                               policy=None, speed=50)
            daemons.append((n, Momd(cfg)))
        counts: dict[int, set[int]] = {}
        for n, m in daemons:
            records = m.wait_ticks(3, timeout=20)
            assert len(records[-1]["guests"]) == n
        for _ in range(5):  # sample a few times while they run
            for n, m in daemons:
                counts.setdefault(n, set()).add(thread_count(m.pid))
            time.sleep(0.1)
        for _n, m in daemons:
            assert m.alive()
        assert len(counts[2]) == 1 and counts[2] == counts[40], counts
        assert max(counts[2]) < 20
    finally:
        for _, m in daemons:
            m.close()


# -- outputs through failures ------------------------------------------------------

POLICY_DIR = str(POLICIES)


def without_tree_dir(cfg: Path) -> Path:
    """The configuration with no [sim] tree-dir: the simulator makes its tree in $TMPDIR."""
    cfg.write_text("".join(line for line in cfg.read_text().splitlines(keepends=True)
                           if not line.startswith("tree-dir")))
    return cfg


def with_rpc_socket(cfg: Path, sock: Path) -> Path:
    cfg.write_text(cfg.read_text().replace("rpc-port: -1", f"rpc-port: {sock}"))
    return cfg


@pytest.fixture
def temp_dir(tmp_path: Path, monkeypatch) -> Path:
    """$TMPDIR for the momd subprocesses of a test (empty unless momd leaves something)."""
    d = tmp_path / "tmp"
    d.mkdir()
    monkeypatch.setenv("TMPDIR", str(d))
    return d


@pytest.fixture
def sock_dir() -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="mom-out-", dir="/tmp"))  # unix socket paths are short
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def tick_lines(log: str) -> int:
    """The newest tick the log told of (a tick's own line, or a summary of quiet ticks)."""
    numbers = re.findall(r"mom\.tick: ticks? (?:\d+-)?(\d+)", log)
    return int(numbers[-1]) if numbers else 0


# momd whose files cannot grow past LIMIT bytes (argv[1]): RLIMIT_FSIZE with SIGXFSZ
# ignored makes a write that does not fit short, then EFBIG, as a full disk does.
FSIZE_MOMD = [sys.executable, "-c",
              "import os, resource, signal, sys\n"
              "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
              "limit = int(sys.argv[1])\n"
              "resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))\n"
              "os.execv(sys.executable, [sys.executable, '-m', 'mom.cli.momd', *sys.argv[2:]])\n"]


def test_a_record_written_through_a_full_disk_replays_every_tick(tmp_path: Path) -> None:
    limit = 48 * 1024  # the record reaches it long before the log (stdout, a file too) does
    cfg = write_config(tmp_path, scenario=scenario_toml(idle_guests(3)), policy_dir=POLICY_DIR)
    m = Momd(cfg, command=[*FSIZE_MOMD, str(limit)])
    try:
        m.wait_log("output record-file")
        at_fault = tick_lines(m.log())
        m.wait_for("20 more ticks", lambda: tick_lines(m.log()) >= at_fault + 20, 20.0)
        assert m.stop()[0] == 0
    finally:
        m.close()
    data = m.record.read_bytes()
    assert data.endswith(b"\n") and len(data) <= limit
    lines = data.decode().splitlines()
    ticks = [json.loads(line)["tick"] for line in lines]  # no cut line: every one is whole JSON
    assert ticks == list(range(1, len(ticks) + 1)) and len(ticks) >= 5  # every tick until the disk was full
    log = m.log()
    faults = [line for line in log.splitlines() if "output record-file" in line]
    assert len(faults) == 1 and "ERROR" in faults[0] and "File too large" in faults[0], faults  # once, no flapping
    replay = run_momctl(["policy", "run", POLICY_DIR, "--snapshots", str(m.record)])
    assert replay.returncode == 0, replay.stderr
    decisions = [json.loads(line) for line in replay.stdout.splitlines()]
    assert len(decisions) == len(ticks) and all(d["ok"] for d in decisions)
    for line, decided in zip(lines, decisions, strict=False):  # the same decisions as momd made
        recorded = json.loads(line)
        assert decided["guest_controls"] == recorded["guest_controls"]
        assert decided["host_controls"] == recorded["host_controls"]


def test_sigterm_and_sigint_leave_nothing_in_tmp(tmp_path: Path, temp_dir: Path) -> None:
    cfg = without_tree_dir(write_config(tmp_path, scenario=scenario_toml(idle_guests(3)), policy_dir=POLICY_DIR))
    # When: at once (maybe before the tree exists), as soon as it runs (maybe mid-collection), after N ticks.
    rounds = [(signal.SIGTERM, "at once"), (signal.SIGTERM, "running"), (signal.SIGINT, "running"),
              (signal.SIGTERM, 1), (signal.SIGINT, 1), (signal.SIGTERM, 3)]
    for n, (signum, when) in enumerate(rounds):
        m = Momd(cfg, log_name=f"momd-{n}.log")
        try:
            if when == "running":
                m.wait_log("momd running")
            elif isinstance(when, int):
                m.wait_ticks(len(m.records()) + when)
                assert [p.name[:8] for p in temp_dir.iterdir()] == ["mom-sim-"]  # its tree is there
            assert m.stop(signum)[0] in (0, -signum if when == "at once" else 0)
        finally:
            m.close()
        assert list(temp_dir.iterdir()) == [], (signum, when, m.log()[-2000:])


def test_a_start_refused_after_the_tree_was_made_leaves_nothing(tmp_path: Path, temp_dir: Path) -> None:
    cfg = without_tree_dir(write_config(tmp_path, scenario=scenario_toml(idle_guests(2)), policy_dir=POLICY_DIR))
    r = run_momd(["-c", str(cfg), "--pid-file", str(tmp_path / "missing" / "momd.pid")])
    assert r.returncode == 2
    assert list(temp_dir.iterdir()) == []


def test_a_killed_momds_tree_is_removed_by_the_next_start(tmp_path: Path, temp_dir: Path) -> None:
    cfg = without_tree_dir(write_config(tmp_path, scenario=scenario_toml(idle_guests(2)), policy_dir=POLICY_DIR))
    not_ours = [temp_dir / "mom-sim-1-abcdefgh", temp_dir / "other"]  # no marker: never touched
    for d in not_ours:
        d.mkdir()
    first = Momd(cfg, log_name="first.log")
    try:
        first.wait_ticks(2)
        first.stop(signal.SIGKILL)
    finally:
        first.close()
    left = [p for p in temp_dir.iterdir() if p.name.startswith(f"mom-sim-{first.pid}-")]
    assert len(left) == 1 and len(list(left[0].rglob("*"))) > 20  # a SIGKILL leaves it
    second = Momd(cfg, log_name="second.log")
    try:
        second.wait_ticks(len(second.records()) + 2)
        assert not left[0].exists()
        assert second.stop()[0] == 0
    finally:
        second.close()
    assert sorted(temp_dir.iterdir()) == sorted(not_ours)


@pytest.mark.parametrize("option, value, problem", [
    ("record-file", "{tmp}/missing/record.jsonl", "No such file or directory"),
    ("record-file", "{tmp}/a-directory", "directory"),
    ("record-file", "/proc/mom-test-record.jsonl", ""),  # root may write almost anywhere, not there
    ("plot-dir", "{tmp}/missing", "No such file or directory"),
    ("plot-dir", "{tmp}/a-file", "Not a directory"),
    ("plot-dir", "/proc", ""),
])
def test_an_output_that_cannot_be_written_at_start_stops_momd(tmp_path: Path, temp_dir: Path, option: str,
                                                             value: str, problem: str) -> None:
    (tmp_path / "a-directory").mkdir()
    (tmp_path / "a-file").write_text("x")
    value = value.format(tmp=tmp_path)
    cfg = without_tree_dir(write_config(tmp_path, scenario=scenario_toml(idle_guests(1)), policy_dir=POLICY_DIR,
                                        record=False, extra_main=f"{option}: {value}"))
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    r = run_momd(["-c", str(cfg)])
    assert r.returncode == 2
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and option in lines[0] and problem in lines[0], r.stderr
    assert value in lines[0] or str(Path(value).parent) in lines[0], r.stderr  # the file, or its directory
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before  # nothing made
    assert not Path("/proc/mom-test-record.jsonl").exists()


def test_a_refused_second_momd_makes_no_plot_folder(tmp_path: Path, temp_dir: Path, sock_dir: Path) -> None:
    plots = tmp_path / "plots"
    plots.mkdir()
    cfg = with_rpc_socket(without_tree_dir(write_config(
        tmp_path, scenario=scenario_toml(idle_guests(1)), policy_dir=POLICY_DIR,
        extra_main=f"plot-dir: {plots}")), sock_dir / "mom.sock")
    m = Momd(cfg)
    try:
        m.wait_ticks(2)
        trees = sorted(temp_dir.iterdir())
        r = run_momd(["-c", str(cfg)])
        assert r.returncode == 2 and len(r.stderr.splitlines()) == 1 and "socket" in r.stderr, r.stderr
        assert [p.name for p in plots.iterdir()] == ["momplot-000"]
        assert sorted(temp_dir.iterdir()) == trees
        assert m.alive()
    finally:
        m.close()


def test_outputs_that_fail_later_are_faults_in_health_until_they_work(tmp_path: Path, sock_dir: Path) -> None:
    from tests.support.rpc import unix_client

    plots, rec_dir = tmp_path / "plots", tmp_path / "rec"
    plots.mkdir()
    rec_dir.mkdir()
    record = rec_dir / "record.jsonl"
    sock = sock_dir / "mom.sock"
    cfg = with_rpc_socket(write_config(
        tmp_path, scenario=scenario_toml(idle_guests(2)), policy_dir=POLICY_DIR, record=False,
        extra_main=f"plot-dir: {plots}\nrecord-file: {record}"), sock)
    m = Momd(cfg)
    try:
        m.wait_for("ticks", lambda: len(read_records(record)) >= 3, 20.0)
        mom = unix_client(sock, timeout=10)

        def output() -> dict[str, Any]:
            return mom.getHealth()["components"].get("output", {"ok": True, "active": {}})

        assert output()["ok"]
        shutil.rmtree(plots)
        shutil.rmtree(rec_dir)
        active = m.wait_for("both output faults", lambda: len(output()["active"]) == 2 and output()["active"], 20.0)
        assert active == {"output plot-dir": f"{plots}: No such file or directory",
                          "output record-file": f"{record}: No such file or directory"}
        health = json.loads(run_momctl(["--socket", str(sock), "health", "--json"]).stdout)
        assert health["ok"] is False and health["components"]["output"]["ok"] is False
        at_fault = tick_lines(m.log())
        m.wait_for("more ticks", lambda: tick_lines(m.log()) >= at_fault + 10, 20.0)
        plots.mkdir()
        rec_dir.mkdir()
        m.wait_for("the outputs to recover", lambda: output()["ok"], 20.0)
        m.wait_for("ticks written again", lambda: len(read_records(record)) >= 3, 20.0)
        assert m.stop()[0] == 0
    finally:
        m.close()
    log = m.log()
    for key in ("output plot-dir", "output record-file"):
        assert len([line for line in log.splitlines() if f"{key}: " in line and "ERROR" in line]) == 1, log
        assert log.count(f"{key}: recovered") == 1
    lines = record.read_text().splitlines()
    assert all(json.loads(line)["tick"] for line in lines)
    folder = plots / "momplot-000"  # made anew in the plot-dir that came back
    check_dat(folder / "host.dat", fields_of(HOST_COLLECTORS), 1)
    assert sorted(p.name for p in folder.iterdir()) == ["host.dat", "vm1.dat", "vm2.dat"]
