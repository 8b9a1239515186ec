"""The plotter: its folder made at the first sample and again when plot-dir
comes back, one fault while samples fail, and nothing kept for gone guests."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest

from mom.core.clock import ManualClock
from mom.daemon.config import load_config
from mom.daemon.plot import Plotter
from mom.engine.engine import Engine, EngineSettings
from mom.hypervisors.sim import SimHypervisor
from mom.policy.policy import PolicySet
from mom.sim.scenario import loads_scenario


def rows(path: Path) -> list[list[str]]:
    return [line.split("\t") for line in path.read_text().splitlines()]


def test_the_folder_is_made_at_the_first_sample(tmp_path: Path) -> None:
    p = Plotter(str(tmp_path))
    p.check()
    assert list(tmp_path.iterdir()) == []  # a start refused after this leaves nothing
    p.sample("host", 1.0, {"b": 2, "a": 1, "skip": [1]})
    p.sample("host", 2.0, {"a": 3, "b": None})
    assert [d.name for d in tmp_path.iterdir()] == ["momplot-000"]
    assert rows(tmp_path / "momplot-000" / "host.dat") == [["# time", "a", "b"], ["1.000", "1", "2"],
                                                            ["2.000", "3", ""]]


def test_an_optional_field_the_entity_does_not_report_gets_no_column(tmp_path: Path) -> None:
    p = Plotter(str(tmp_path))
    p.sample("vm1", 1.0, {"mem_available": 1024, "oom_kills": None, "virtio_mem_size": None})
    p.sample("vm1", 2.0, {"mem_available": 2048, "oom_kills": None, "virtio_mem_size": None})
    p.sample("vm2", 1.0, {"mem_available": 512, "oom_kills": 0, "virtio_mem_size": 4096})
    folder = tmp_path / "momplot-000"
    assert rows(folder / "vm1.dat") == [["# time", "mem_available"], ["1.000", "1024"], ["2.000", "2048"]]
    assert rows(folder / "vm2.dat") == [["# time", "mem_available", "oom_kills", "virtio_mem_size"],
                                        ["1.000", "512", "0", "4096"]]


def test_check_refuses_what_cannot_take_a_folder(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    for bad in (tmp_path / "missing", tmp_path / "file"):
        with pytest.raises(OSError):
            Plotter(str(bad)).check()
    assert [p.name for p in tmp_path.iterdir()] == ["file"]


def test_plot_dir_removed_is_one_fault_and_plots_resume_when_it_returns(tmp_path: Path, caplog) -> None:
    base = tmp_path / "plots"
    base.mkdir()
    (base / "momplot-004").mkdir()  # an earlier run's
    p = Plotter(str(base))
    with caplog.at_level(logging.INFO, logger="mom.plot"):
        p.sample("host", 1.0, {"a": 1})
        p.sample("vm1", 1.0, {"x": 1})
        assert p.dir == str(base / "momplot-005")
        shutil.rmtree(base)
        for t in range(2, 6):
            p.sample("host", float(t), {"a": t})
            p.sample("vm1", float(t), {"x": t})
        assert p.faults.active() == {"output plot-dir": f"{base}: No such file or directory"}
        base.mkdir()
        p.sample("host", 6.0, {"a": 6})
        assert p.faults.active() != {}  # vm1 has not been written yet
        p.sample("vm1", 6.0, {"x": 6})
        assert p.faults.active() == {}
    assert p.dir == str(base / "momplot-000")
    assert rows(base / "momplot-000" / "host.dat") == [["# time", "a"], ["6.000", "6"]]
    assert rows(base / "momplot-000" / "vm1.dat") == [["# time", "x"], ["6.000", "6"]]
    messages = [r.getMessage() for r in caplog.records]
    assert len([m for m in messages if "output plot-dir: " in m and "recovered" not in m]) == 1
    assert messages.count("output plot-dir: recovered") == 1


def test_a_failing_guest_that_goes_clears_the_fault(tmp_path: Path) -> None:
    p = Plotter(str(tmp_path))
    p.sample("host", 1.0, {"a": 1})
    (Path(p.dir) / "vm1.dat").mkdir()  # vm1's file cannot be written
    p.sample("vm1", 1.0, {"x": 1})
    p.sample("host", 2.0, {"a": 2})
    assert list(p.faults.active()) == ["output plot-dir"]  # host writing does not hide vm1's failure
    p.forget("vm1")
    assert p.faults.active() == {}


def test_nothing_is_kept_for_gone_guests(tmp_path: Path) -> None:
    p = Plotter(str(tmp_path))
    for i in range(2000):  # guests coming and going
        p.sample(f"vm-{i}", float(i), {"x": i, "y": i})
        p.forget(f"vm-{i}")
    p.sample("host", 1.0, {"a": 1})
    assert p.entities() == ["host"]


CHURN = """
[host]
memory = 8192
[[guest]]
name = "stays"
max = 1024
workload = { type = "idle" }
[[guest]]
name = "leaves"
max = 1024
stop = 30
workload = { type = "idle" }
"""


def test_the_engine_tells_the_plotter_when_a_guest_goes(tmp_path: Path) -> None:
    clock = ManualClock()
    hv = SimHypervisor(loads_scenario(CHURN, "churn.toml"), clock=clock, tree_dir=str(tmp_path / "tree"))
    plotter = Plotter(str(tmp_path))
    settings = EngineSettings.from_config(
        load_config(None),
        host_collectors=("HostMemory",), guest_collectors=("GuestMemory",), controllers=(),
        proc_root=hv.proc_root, sys_root=hv.sys_root)
    engine = Engine(settings, hv, PolicySet(), clock, on_sample=plotter.sample, on_guest_gone=plotter.forget)
    try:
        for _ in range(6):
            clock.now += 10
            engine.discover()
            engine.collect_host()
            engine.collect_guests()
            if clock.now < 30:
                assert plotter.entities() == ["host", "leaves", "stays"]
        assert plotter.entities() == ["host", "stays"]
    finally:
        engine.close()
        hv.close()
