#!/usr/bin/env python3
"""momctl plot on a day of 10 s ticks and 50 guests: how long it takes, from a
flight recorder file and from a plot-dir, and the charts to look at.

    .venv/bin/python bench/plot_bench.py [--guests 50] [--hours 24] [--keep DIR]

The data are made up here: each guest's demand follows its own daily wave, the
host is short of memory in the afternoon and the balloons follow. The record
keeps one statistics row per entity (sample-history-length 1) so a day fits in
about 100 MB. Wall time (the drawing is CPU-bound in one process).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from typing import TextIO

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from mom.cli import plot

MIB = 1024
START = 1_800_000_000.0


def guest_row(i: int, t: float, balloon: float) -> dict[str, float]:
    day = 2 * math.pi * (t - START) / 86400
    demand = (700 + 500 * math.sin(day) + 150 * math.sin(3 * day + i)) * MIB
    unused = max(64 * MIB, balloon - demand)
    return {"balloon_cur": balloon, "balloon_max": 2048 * MIB, "balloon_min": 256 * MIB, "mem_unused": unused,
            "mem_free": unused + 100 * MIB, "mem_available": balloon, "swap_usage": max(0.0, demand - balloon),
            "swap_in": 0, "major_fault": 0}


def write_record(path: str, guests: int, ticks: int) -> None:
    balloons = [2048.0 * MIB] * guests
    with open(path, "w") as f:
        for n in range(ticks):
            t = START + 10 * n
            rows = [guest_row(i, t, balloons[i]) for i in range(guests)]
            used = sum(r["balloon_cur"] - r["mem_unused"] for r in rows) + 2048 * MIB
            total = 48 * 1024 * MIB
            host = {"mem_available": total, "mem_free": total - used, "mem_unused": total - used - 1024 * MIB,
                    "swap_usage": 0, "swap_total": 8192 * MIB, "ksm_pages_sharing": 100000}
            actions = []
            short = (total - used) / total < 0.2
            for i in range(guests):
                new = max(256 * MIB, balloons[i] * 0.95) if short else min(2048 * MIB, balloons[i] * 1.05)
                if abs(new - balloons[i]) > MIB:
                    actions.append({"time": t, "controller": "Balloon", "target": f"vm{i}",
                                    "control": "balloon_target", "old": balloons[i], "new": new, "applied": True,
                                    "reason": None})
                    balloons[i] = new
            rec = {"tick": n + 1, "time": t, "host": {"properties": {}, "statistics": [host]},
                   "guests": [{"properties": {"name": f"vm{i}"}, "statistics": [rows[i]]} for i in range(guests)],
                   "ok": True, "actions": actions}
            f.write(json.dumps(rec, separators=(",", ":")) + "\n")


def write_plot_dir(path: str, record: str) -> None:
    """The same samples as plot-dir writes them (one .dat per entity)."""
    folder = os.path.join(path, "momplot-000")
    os.makedirs(folder)
    files: dict[str, tuple[TextIO, list[str]]] = {}
    with open(record) as f:
        for line in f:
            rec = json.loads(line)
            entities = [("host", rec["host"])] + [(g["properties"]["name"], g) for g in rec["guests"]]
            for name, e in entities:
                row = e["statistics"][-1]
                if name not in files:
                    out: TextIO = open(os.path.join(folder, name + ".dat"), "w")
                    fields = sorted(row)
                    out.write("\t".join(["# time", *fields]) + "\n")
                    files[name] = (out, fields)
                out, fields = files[name]
                out.write("\t".join([f"{rec['time']:.3f}", *(str(row[k]) for k in fields)]) + "\n")
    for out, _ in files.values():
        out.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--guests", type=int, default=50)
    parser.add_argument("--hours", type=float, default=24)
    parser.add_argument("--keep", metavar="DIR", help="leave the charts here")
    args = parser.parse_args()
    ticks = int(args.hours * 360)
    with tempfile.TemporaryDirectory() as d:
        record = os.path.join(d, "record.jsonl")
        write_record(record, args.guests, ticks)
        plots = os.path.join(d, "plots")
        write_plot_dir(plots, record)
        print(f"{'source':<10} {'ticks':>6} {'guests':>6} {'input MB':>8} {'seconds':>8} {'charts':>6} {'PNG MB':>7}")
        for name, source in (("record", record), ("plot-dir", plots)):
            out = (args.keep and os.path.join(args.keep, name)) or os.path.join(d, "out-" + name)
            size = (os.path.getsize(source) if os.path.isfile(source) else
                    sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(source) for f in fs))
            t0 = time.perf_counter()
            written = plot.plot(source, out)
            seconds = time.perf_counter() - t0
            png = sum(os.path.getsize(p) for p in written)
            print(f"{name:<10} {ticks:>6} {args.guests:>6} {size / 1e6:>8.1f} {seconds:>8.1f} {len(written):>6} "
                  f"{png / 1e6:>7.1f}")


if __name__ == "__main__":
    main()
