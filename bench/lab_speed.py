#!/usr/bin/env python3
"""Speed of `momctl bench` runs: simulated seconds per second for one run on one
core, a 6-guest host (the simulator's built-in scenario) and a 100-guest host.

    .venv/bin/python bench/lab_speed.py [--hours H]

Each run is the whole pipeline the bench runs (the simulator stepping, its tree
written, MOM's collectors, the policy, the controllers, the figures), in this
process, timed in CPU seconds and wall seconds; best of 2.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, ROOT)

from daemon_bench import scenario  # noqa: E402  (bench/ is on sys.path when run as a script)

from mom.lab.runner import PolicySpec, RunSpec, lab_config, load_policy_spec, quiet_logging, run  # noqa: E402
from mom.sim.scenario import Scenario, default_scenario, loads_scenario  # noqa: E402


def many_guests(guests: int) -> str:
    """An overcommitted host of guests of 1-4 GiB on ten-minute cycles (bench/daemon_bench.py's)."""
    return scenario(guests, name="host100")


def measure(scenario: Scenario, policy: PolicySpec, hours: float) -> tuple[float, float]:
    """(simulated s per wall s, simulated s per CPU s), best of 2."""
    best_wall = best_cpu = float("inf")
    for _ in range(2):
        c0, w0 = time.process_time(), time.perf_counter()
        run(RunSpec(scenario, scenario.name, policy, scenario.seed, hours))
        best_cpu = min(best_cpu, time.process_time() - c0)
        best_wall = min(best_wall, time.perf_counter() - w0)
    return hours * 3600 / best_wall, hours * 3600 / best_cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hours", type=float, default=0.5, help="simulated hours per run (default 0.5)")
    args = ap.parse_args()
    quiet_logging()
    config = lab_config()
    policies = [load_policy_spec("none", [], config),
                load_policy_spec("sample", [os.path.join(ROOT, "bench/policies/mom-sample")], config),
                load_policy_spec("proxmox", [os.path.join(ROOT, "bench/policies/proxmox.policy")], config)]
    hosts = [(6, default_scenario(), args.hours), (100, loads_scenario(many_guests(100), "host100"), args.hours / 5)]
    print(f"{'guests':>6}  {'policy':<8} {'sim h':>6} {'sim s / wall s':>15} {'sim s / cpu s':>14}")
    for guests, host_scenario, hours in hosts:
        for policy in policies:
            wall, cpu = measure(host_scenario, policy, hours)
            print(f"{guests:>6}  {policy.name:<8} {hours:>6.2f} {wall:>15,.0f} {cpu:>14,.0f}")


if __name__ == "__main__":
    main()
