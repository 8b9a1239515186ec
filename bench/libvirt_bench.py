#!/usr/bin/env python3
"""Benchmark: one guest collection tick of the libvirt interface at 100 and 500 domains.

Runs against libvirt's test driver (a generated ``test:///PATH.xml`` node with N
running domains), through MOM's engine (discovery, then the guest collection
step with the GuestMemory and GuestBalloon collectors), and prints a table:

- tick ms: the engine's whole guest collection step (refresh + collect_all on
  the call pool + collectors), median of the repetitions; "libvirt ms" is the
  interface's part (refresh + collect_all called directly).
- calls: libvirt API calls in one tick, counted by wrapping the connection
  (mom.hypervisors.libvirt.count; client-side accessors such as name() and
  UUIDString() are not calls).
- threads: the process's threads after the ticks (/proc/self/task): the main
  thread, the engine's call pool and libvirt's event-loop thread.

Modes:

- bulk: getAllDomainStats with balloon.* filled. The test driver leaves
  balloon.* empty, so a stand-in (BalloonStatsFiller) fills them as the QEMU
  driver does from memoryStats() read once before the measurement; the rows
  measure MOM's side and the number of calls, not libvirtd's cost of a real
  bulk call over 500 QEMU guests.
- fallback: the test driver as it is: getAllDomainStats has no balloon.*, so
  memoryStats() and info() per domain.

Usage: .venv/bin/python bench/libvirt_bench.py [--counts 100,500] [--repeat 20]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid as uuidlib
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import libvirt

from mom.daemon.config import load_config
from mom.engine.engine import Engine, EngineSettings
from mom.hypervisors.libvirt import LibvirtHypervisor
from mom.hypervisors.libvirt.count import BalloonStatsFiller, CountingConnection
from mom.policy.policy import PolicySet

SECTIONS = ["memory", "balloon"]


def node_xml(count: int) -> str:
    ns = uuidlib.UUID("0d6c2b7e-9f1a-4c55-8e1f-6d6f6d2d6c76")
    doms = []
    for i in range(count):
        doms.append(f"""<domain type='test'><name>vm{i}</name><uuid>{uuidlib.uuid5(ns, f'vm{i}')}</uuid>
  <memory unit='KiB'>1048576</memory><currentMemory unit='KiB'>1048576</currentMemory>
  <memtune><min_guarantee unit='KiB'>262144</min_guarantee></memtune>
  <vcpu>2</vcpu><os><type arch='x86_64'>hvm</type></os>
  <devices><memballoon model='virtio'><stats period='5'/></memballoon></devices></domain>""")
    return ("<node><cpu><nodes>1</nodes><sockets>1</sockets><cores>4</cores><threads>1</threads>"
            "<active>4</active><mhz>2000</mhz></cpu><memory>67108864</memory>\n" + "\n".join(doms) + "\n</node>\n")


def threads() -> int:
    return len(os.listdir("/proc/self/task"))


def run(count: int, mode: str, repeat: int, workdir: Path) -> dict[str, Any]:
    path = workdir / f"node-{count}.xml"
    if not path.exists():
        path.write_text(node_xml(count))
    holder: dict[str, CountingConnection] = {}

    def opener(uri: str | None) -> CountingConnection:
        conn = libvirt.open(uri)
        if mode == "bulk":
            conn = BalloonStatsFiller(conn)
        holder["conn"] = CountingConnection(conn)
        return holder["conn"]

    hv = LibvirtHypervisor(f"test://{path}", opener=opener)
    settings = EngineSettings.from_config(
        load_config(None),
        host_collectors=(), guest_collectors=("GuestMemory", "GuestBalloon"),
        guest_interval=5, call_timeout=10)
    engine = Engine(settings, hv, PolicySet())
    try:
        engine.discover()
        engine.collect_guests()  # warm-up: fills the per-domain XML cache (balloon_min)
        assert len(engine.status().guests) == count and all(g.ready for g in engine.status().guests), \
            "guests not ready"
        counter = holder["conn"].counter
        tick_ms, lv_ms, calls = [], [], []
        guests = engine.inventory.known_guests()
        for _ in range(repeat):
            counter.reset()
            t0 = time.perf_counter()
            engine.collect_guests()
            tick_ms.append((time.perf_counter() - t0) * 1000)
            calls.append(counter.total)
            t0 = time.perf_counter()
            hv.refresh()
            data = hv.collect_all(guests, SECTIONS)
            lv_ms.append((time.perf_counter() - t0) * 1000)
            assert len(data) == count
        assert all(g.ready for g in engine.status().guests)
        return {"tick": statistics.median(tick_ms), "libvirt": statistics.median(lv_ms),
                "calls": max(calls), "threads": threads(), "by": dict(counter.calls)}
    finally:
        engine.close()
        hv.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--counts", default="100,500")
    ap.add_argument("--repeat", type=int, default=20)
    args = ap.parse_args()
    counts = [int(c) for c in args.counts.split(",")]
    libvirt.registerErrorHandler(lambda ctx, err: None, None)
    with tempfile.TemporaryDirectory(prefix="mom-lv-bench-") as tmp:
        print(f"libvirt {libvirt.getVersion() // 1000000}.{libvirt.getVersion() // 1000 % 1000}, "
              f"test driver, median of {args.repeat} ticks, sections {', '.join(SECTIONS)}\n")
        print("| domains | mode     | tick ms | libvirt ms | libvirt calls / tick | threads |")
        print("|--------:|----------|--------:|-----------:|---------------------:|--------:|")
        for count in counts:
            for mode in ("bulk", "fallback"):
                r = run(count, mode, args.repeat, Path(tmp))
                print(f"| {count:7d} | {mode:8s} | {r['tick']:7.1f} | {r['libvirt']:10.1f} | "
                      f"{r['calls']:20d} | {r['threads']:7d} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
