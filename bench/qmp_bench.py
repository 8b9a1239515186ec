#!/usr/bin/env python3
"""Benchmark: one guest collection tick of the qmp interface at 100 guests.

The guests are fake QEMUs (tests/support/qmp_double.py) speaking QMP on real unix
sockets, served by a separate process so that the CPU column is MOM's alone. The
tick goes through MOM's engine (discovery, then the guest collection step with
the GuestMemory and GuestBalloon collectors, plus GuestVirtioMem in the
virtio-mem rows) and the table shows:

- tick ms: the engine's whole guest collection step (refresh + collect_all on
  the call pool + collectors), median of the repetitions; "CPU ms": this
  process's CPU time in that step (all threads: the pool, the interface's
  asyncio loop thread), median.
- QMP calls / tick: the commands the interface sent in one tick, all guests
  (counted by the interface's connections; per guest: guest-stats, query-balloon,
  and query-memory-devices with a virtio-mem device).
- threads: this process's threads after the ticks (/proc/self/task): the main
  thread, the engine's call pool and the interface's one loop thread.

Usage: .venv/bin/python bench/qmp_bench.py [--counts 100,500] [--repeat 20]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mom.daemon.config import load_config
from mom.engine.engine import Engine, EngineSettings
from mom.hypervisors.qmp import QmpHypervisor
from mom.policy.policy import PolicySet

REPO = Path(__file__).resolve().parents[1]


def threads() -> int:
    return len(os.listdir("/proc/self/task"))


def run(count: int, virtio_mem: bool, repeat: int, workdir: Path) -> dict[str, Any]:
    sockets = workdir / f"{count}{'-vm' if virtio_mem else ''}"
    sockets.mkdir()
    server = subprocess.Popen([sys.executable, "-m", "tests.support.qmp_double", str(sockets), str(count),
                               *(["--virtio-mem"] if virtio_mem else [])],
                              cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert server.stdout is not None and server.stdout.readline().strip() == "ready"
    hv = QmpHypervisor(str(sockets / "*.qmp"), timeout=3.0, stats_period=5)
    collectors = ("GuestMemory", "GuestBalloon") + (("GuestVirtioMem",) if virtio_mem else ())
    settings = EngineSettings.from_config(load_config(None), host_collectors=(), guest_collectors=collectors,
                                          guest_interval=5, call_timeout=10)
    engine = Engine(settings, hv, PolicySet())
    try:
        t0 = time.perf_counter()
        engine.discover()
        discover_ms = (time.perf_counter() - t0) * 1000
        engine.collect_guests()
        assert len(engine.status().guests) == count and all(g.ready for g in engine.status().guests), \
            "guests not ready"
        tick_ms, cpu_ms, calls = [], [], []
        for _ in range(repeat):
            before = hv.calls()
            t0, c0 = time.perf_counter(), time.process_time()
            engine.collect_guests()
            tick_ms.append((time.perf_counter() - t0) * 1000)
            cpu_ms.append((time.process_time() - c0) * 1000)
            calls.append(hv.calls() - before)
        assert all(g.ready for g in engine.status().guests)
        return {"tick": statistics.median(tick_ms), "cpu": statistics.median(cpu_ms), "calls": max(calls),
                "discover": discover_ms, "threads": threads()}
    finally:
        engine.close()
        hv.close()
        server.stdin.close()  # type: ignore[union-attr]
        server.wait(10)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--counts", default="100")
    ap.add_argument("--repeat", type=int, default=20)
    args = ap.parse_args()
    counts = [int(c) for c in args.counts.split(",")]
    with tempfile.TemporaryDirectory(prefix="mom-qmp-bench-") as tmp:
        print(f"qmp interface, fake QEMUs on unix sockets in another process, median of {args.repeat} ticks\n")
        print("| guests | sections                    | tick ms | CPU ms | QMP calls / tick | first discovery ms "
              "| threads |")
        print("|-------:|-----------------------------|--------:|-------:|-----------------:|-------------------:"
              "|--------:|")
        for count in counts:
            for virtio_mem in (False, True):
                r = run(count, virtio_mem, args.repeat, Path(tmp))
                sections = "memory, balloon" + (", virtio_mem" if virtio_mem else "")
                print(f"| {count:6d} | {sections:27s} | {r['tick']:7.1f} | {r['cpu']:6.1f} | {r['calls']:16d} "
                      f"| {r['discover']:18.1f} | {r['threads']:7d} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
