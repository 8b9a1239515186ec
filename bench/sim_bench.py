"""The simulator alone: how fast it steps, and what each library scenario does
to its guests with no manager at all.

    .venv/bin/python bench/sim_bench.py [--hours H] [--seed N] [SCENARIO.toml ...]

Prints two tables: simulated seconds per wall second of the model (no MOM) for
a 6-guest and a 100-guest host, and per scenario (default: bench/scenarios/*)
with no balloon or KSM control: peak host swap, host free below 10% (s),
total guest stall (s), guest and host OOM kills, KSM saved at the end.
"""

from __future__ import annotations

import argparse
import glob
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from mom.sim.model import SimModel
from mom.sim.scenario import load_scenario, loads_scenario

MIB = 1024
HERE = os.path.dirname(os.path.abspath(__file__))


def many_guests(n: int) -> str:
    guests = "".join(f"""
[[guest]]
name = "g{i}"
max = 2048
min = 256
stats_period = 5
workload = {{ type = "daily", mean = 800, amplitude = 500, period = 3600, phase = {i / n:.3f}, noise = 16 }}
""" for i in range(n))
    return f"[host]\nmemory = {n * 1400}\nswap = 8192\n[ksm]\nrun = 1\n" + guests


def speed(n: int, seconds: float) -> float:
    m = SimModel(loads_scenario(many_guests(n)))
    start = time.perf_counter()
    m.advance(seconds)
    return seconds / (time.perf_counter() - start)


def no_manager(path: str, hours: float, seed: int | None) -> dict[str, float]:
    m = SimModel(load_scenario(path), seed=seed)
    peak_swap = low_free = 0.0
    end = hours * 3600
    t = 0.0
    while t < end:
        t += 10
        m.advance_to(t)
        obs = m.observe()
        peak_swap = max(peak_swap, obs.swap_used_kib)
        if obs.free_kib < 0.10 * obs.ram_kib:
            low_free += 10
    obs = m.observe()
    return {"swap_peak_mib": peak_swap / MIB, "low_free_s": low_free,
            "stall_s": sum(g.stall_seconds_total for g in obs.guests),
            "guest_oom": sum(g.oom_kills_total for g in obs.guests), "host_oom": obs.oom_kills_total,
            "ksm_saved_mib": obs.ksm_saved_kib / MIB}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hours", type=float, default=4.0)
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("scenarios", nargs="*")
    args = ap.parse_args()
    print("| guests | simulated s per wall s |\n|---:|---:|")
    for n, seconds in ((6, 3600), (100, 600)):
        print(f"| {n} | {speed(n, seconds):,.0f} |")
    paths = args.scenarios or sorted(glob.glob(os.path.join(HERE, "scenarios", "*.toml")))
    print(f"\nNo manager, {args.hours:g} h, seed {'of each file' if args.seed is None else args.seed}:\n")
    print("| scenario | host swap peak MiB | free < 10% (s) | guest stall (s) | guest OOM | host OOM | KSM saved MiB |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for path in paths:
        r = no_manager(path, args.hours, args.seed)
        print(f"| {os.path.basename(path)[:-5]} | {r['swap_peak_mib']:.0f} | {r['low_free_s']:.0f} | "
              f"{r['stall_s']:.0f} | {r['guest_oom']:.0f} | {r['host_oom']:.0f} | {r['ksm_saved_mib']:.0f} |")


if __name__ == "__main__":
    main()
