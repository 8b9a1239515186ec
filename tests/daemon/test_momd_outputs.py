"""momd for real: plot-dir output, and a thread count that does not grow with guests."""

from __future__ import annotations

import time
from pathlib import Path

import mom.collectors  # noqa: F401  (fills the registry)
from mom.collectors.base import REGISTRY

from .momd_helpers import Momd, idle_guests, scenario_toml, thread_count, write_config

HOST_COLLECTORS = ("HostMemory", "HostKSM")
GUEST_COLLECTORS = ("GuestMemory", "GuestBalloon")


def fields_of(collectors: tuple[str, ...]) -> list[str]:
    out: set[str] = set()
    for name in collectors:
        out |= REGISTRY[name].fields()
    return sorted(out)


def check_dat(path: Path, fields: list[str], min_rows: int) -> None:
    lines = path.read_text().splitlines()
    assert lines[0] == "\t".join(["# time", *fields]), lines[0]
    rows = [line.split("\t") for line in lines[1:]]
    assert len(rows) >= min_rows
    times = []
    for row in rows:
        assert len(row) == len(fields) + 1, row
        times.append(float(row[0]))
        assert all(cell != "" for cell, name in zip(row[1:], fields) if name != "ksm_merge_across_nodes")
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
            m.wait_ticks(5 * (n + 1))
            assert m.stop()[0] == 0
        finally:
            m.close()
        folder = plots / f"momplot-{n:03d}"
        assert sorted(p.name for p in plots.iterdir()) == [f"momplot-{i:03d}" for i in range(n + 1)]
        assert sorted(p.name for p in folder.iterdir()) == ["host.dat", "vm1.dat", "vm2.dat"]
        check_dat(folder / "host.dat", fields_of(HOST_COLLECTORS), 5)
        for guest in ("vm1", "vm2"):
            check_dat(folder / f"{guest}.dat", fields_of(GUEST_COLLECTORS), 5)


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
        for n, m in daemons:
            assert m.alive()
        assert len(counts[2]) == 1 and counts[2] == counts[40], counts
        assert max(counts[2]) < 20
    finally:
        for _, m in daemons:
            m.close()
