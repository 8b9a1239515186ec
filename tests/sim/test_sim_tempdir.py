"""The simulator's temporary tree: named after its owner, removed by close()
and at exit, and removed by the next simulator when its owner was killed;
never anything without the marker, nor a tree whose owner lives (even one
that detached under another pid)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from mom.hypervisors.sim import SimHypervisor
from mom.sim.proctree import MARKER, ProcTree, TreeClosed, remove_stale_trees
from tests.support.wait import wait_until

REPO = Path(__file__).resolve().parents[2]


def run_python(code: str, temp_dir: Path, **kw) -> subprocess.CompletedProcess:
    env = {**os.environ, "TMPDIR": str(temp_dir)}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=60, **kw)


@pytest.fixture
def temp_dir(tmp_path: Path, monkeypatch) -> Path:
    d = tmp_path / "tmp"
    d.mkdir()
    monkeypatch.setenv("TMPDIR", str(d))
    import tempfile
    monkeypatch.setattr(tempfile, "tempdir", None)  # read $TMPDIR again
    return d


def test_close_removes_the_tree_and_stops_writes(temp_dir: Path, small, clock) -> None:
    hv = SimHypervisor(small, clock=clock)
    root = Path(hv.root)
    assert root.parent == temp_dir and root.name.startswith(f"mom-sim-{os.getpid()}-")
    assert (root / MARKER).is_file() and (root / "proc" / "meminfo").is_file()
    hv.close()
    assert list(temp_dir.iterdir()) == []
    with pytest.raises(TreeClosed):  # a pool thread still running after close cannot re-create it
        hv.tree.write({"proc/meminfo": "x\n"})
    hv.close()  # twice is fine
    assert list(temp_dir.iterdir()) == []


def test_a_given_tree_dir_is_kept(tmp_path: Path, small, clock) -> None:
    hv = SimHypervisor(small, clock=clock, tree_dir=str(tmp_path / "tree"))
    hv.close()
    assert (tmp_path / "tree" / "proc" / "meminfo").is_file()
    assert not (tmp_path / "tree" / MARKER).exists()


def test_an_exception_or_exit_without_close_removes_the_tree(temp_dir: Path) -> None:
    r = run_python("""
        from mom.hypervisors.sim import SimHypervisor
        hv = SimHypervisor()
        print(hv.root, flush=True)
        raise RuntimeError("boom")
    """, temp_dir)
    assert "RuntimeError: boom" in r.stderr
    assert r.stdout.strip().startswith(str(temp_dir / "mom-sim-"))
    assert list(temp_dir.iterdir()) == []


def test_a_killed_owners_tree_goes_with_the_next_start_and_nothing_else(temp_dir: Path, small, clock) -> None:
    proc = subprocess.Popen([sys.executable, "-c", "from mom.hypervisors.sim import SimHypervisor\n"
                             "hv = SimHypervisor(); print(hv.root, flush=True); import time; time.sleep(60)"],
                            cwd=REPO, env={**os.environ, "TMPDIR": str(temp_dir)}, stdout=subprocess.PIPE, text=True)
    try:
        killed_root = Path(proc.stdout.readline().strip())
    finally:
        proc.kill()
        proc.wait(10)
        proc.stdout.close()
    assert killed_root.is_dir() and killed_root.name.startswith(f"mom-sim-{proc.pid}-")
    # Things that look alike but are not a dead simulator's tree.
    no_marker = temp_dir / "mom-sim-999999-abcdefgh"
    no_marker.mkdir()
    wrong_marker = temp_dir / "mom-sim-999998-abcdefgh"
    wrong_marker.mkdir()
    (wrong_marker / MARKER).write_text("something else\n")
    other_name = temp_dir / "mom-sim-abcdefgh"
    other_name.mkdir()
    (other_name / MARKER).write_text((killed_root / MARKER).read_text())
    (temp_dir / "mom-sim-123-file").write_text("x")
    symlink = temp_dir / "mom-sim-777-link"
    symlink.symlink_to(killed_root)
    live = ProcTree.temporary()  # alive: locked by this process
    decoys = sorted(p.name for p in temp_dir.iterdir() if p != killed_root)
    hv = SimHypervisor(small, clock=clock)
    try:
        assert not killed_root.exists()
        assert sorted(p.name for p in temp_dir.iterdir()) == sorted([*decoys, Path(hv.root).name])
        assert Path(live.root).is_dir() and remove_stale_trees(str(temp_dir)) == []
    finally:
        hv.close()
        live.close()
    assert sorted(p.name for p in temp_dir.iterdir()) == sorted(set(decoys) - {Path(live.root).name})


def test_a_detached_owner_keeps_its_tree(temp_dir: Path) -> None:
    """momd -d builds the simulator, then forks away: the pid in the name is gone, the owner is not."""
    proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent("""
        import os, sys, time
        from mom.hypervisors.sim import SimHypervisor
        hv = SimHypervisor()
        child = os.fork()
        if child:
            print(hv.root, child, flush=True)
            os._exit(0)
        time.sleep(60)
    """)], cwd=REPO, env={**os.environ, "TMPDIR": str(temp_dir)}, stdout=subprocess.PIPE, text=True)
    root_text, child_text = proc.stdout.readline().split()
    proc.wait(10)
    proc.stdout.close()
    root, child = Path(root_text), int(child_text)
    try:
        assert remove_stale_trees(str(temp_dir)) == []
        assert root.is_dir()
    finally:
        os.kill(child, signal.SIGKILL)
    # Its lock goes when the kernel has closed its files.
    removed = wait_until(lambda: remove_stale_trees(str(temp_dir)), 10, what="the dead holder's tree removed")
    assert removed == [str(root)]
    assert list(temp_dir.iterdir()) == []
