#!/usr/bin/env python3
"""Benchmark: one guest collection tick of the qmp interface at 100 guests.

The guests are fake QEMUs (tests/support/qmp_double.py) speaking QMP on real unix
sockets, served by a separate process so that the CPU column is MOM's alone. The
tick goes through MOM's engine (discovery, then the guest collection step with
the GuestMemory and GuestBalloon collectors, plus GuestVirtioMem in the
virtio-mem rows) and the table shows:

- tick ms: the engine's whole guest collection step (refresh + collect_all on
  the call pool + collectors), median of the repetitions ("first tick ms": the
  first of them); "CPU ms": this
  process's CPU time in that step (all threads: the pool, the interface's
  asyncio loop thread), median.
- QMP calls / tick: the commands the interface sent in one tick (after the
  first), all guests
  (counted by the interface's connections; per guest: guest-stats, query-balloon,
  and query-memory-devices with a virtio-mem device).
- collected: guests with a complete row after the ticks.
- threads: this process's threads after the ticks (/proc/self/task): the main
  thread, the engine's call pool and the interface's one loop thread.

A last row has one of the QEMUs stop answering before the ticks: the first tick
waits for that guest's deadline (the interface's QMP timeout, 3 s here) and
collects the others; later ticks leave it out at once (its connection is
dropped) until discovery connects to it again.

Usage: .venv/bin/python bench/qmp_bench.py [--counts 100,500] [--repeat 20]
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
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


def run(count: int, virtio_mem: bool, repeat: int, workdir: Path, hang: bool = False) -> dict[str, Any]:
    sockets = workdir / f"{count}{'-vm' if virtio_mem else ''}{'-hung' if hang else ''}"
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
        if hang:
            server.send_signal(signal.SIGUSR1)
            time.sleep(0.2)
        tick_ms, cpu_ms, calls = [], [], []
        for _ in range(repeat):
            before = hv.calls()
            t0, c0 = time.perf_counter(), time.process_time()
            engine.collect_guests()
            tick_ms.append((time.perf_counter() - t0) * 1000)
            cpu_ms.append((time.process_time() - c0) * 1000)
            calls.append(hv.calls() - before)
        ready = sum(1 for g in engine.status().guests if g.ready)
        assert ready == count - hang, ready
        return {"tick": statistics.median(tick_ms), "first": tick_ms[0], "cpu": statistics.median(cpu_ms),
                "calls": max(calls[1:] or calls), "discover": discover_ms, "threads": threads(), "ready": ready}
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
    logging.getLogger("mom.qmp").setLevel(logging.ERROR)  # the hung row's one warning is expected
    with tempfile.TemporaryDirectory(prefix="mom-qmp-bench-") as tmp:
        print(f"qmp interface, fake QEMUs on unix sockets in another process, median of {args.repeat} ticks\n")
        print("| guests | sections                    | tick ms | first tick ms | CPU ms | QMP calls / tick "
              "| first discovery ms | collected | threads |")
        print("|-------:|-----------------------------|--------:|--------------:|-------:|-----------------:"
              "|-------------------:|----------:|--------:|")
        rows = [(count, virtio_mem, False) for count in counts for virtio_mem in (False, True)]
        rows.append((counts[0], False, True))
        for count, virtio_mem, hang in rows:
            r = run(count, virtio_mem, args.repeat, Path(tmp), hang)
            sections = "memory, balloon" + (", virtio_mem" if virtio_mem else "") + (" (vm0 hung)" if hang else "")
            print(f"| {count:6d} | {sections:27s} | {r['tick']:7.1f} | {r['first']:13.1f} | {r['cpu']:6.1f} "
                  f"| {r['calls']:16d} | {r['discover']:18.1f} | {r['ready']:9d} | {r['threads']:7d} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
