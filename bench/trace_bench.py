#!/usr/bin/env python3
"""What tracing a tick costs: the flight recorder keeps each tick's policy
variables by evaluating the policy again, traced (mom.policy.trace), after the
tick's own run. This prints the CPU time of the plain run (PolicySet.run) and of
the traced one, for bench/policies/mom-sample on snapshots of 10 to 1,000 guests.

    .venv/bin/python bench/trace_bench.py [--guests 10,100,1000] [--repeat N]

CPU time of this process, the best of N (wall time on a shared machine mostly
measures the neighbours).
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import time
from collections.abc import Callable

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from mom.engine.explain import tick_trace
from mom.policy.policy import PolicySet
from mom.policy.snapshot import EntityData, Snapshot
from mom.policy.trace import trace_run

REPO = os.path.join(os.path.dirname(__file__), "..")
MIB = 1024


def snapshot(guests: int, history: int = 10) -> Snapshot:
    """A host short of memory (every guest is ballooned) with its guests."""
    host_row = {"mem_available": 256 * 1024 * MIB, "mem_free": 20 * 1024 * MIB, "mem_unused": 10 * 1024 * MIB,
                "ksm_run": 1, "ksm_pages_to_scan": 100, "ksm_sleep_millisecs": 20, "ksm_shareable": 0,
                "ksm_pages_sharing": 0, "ksm_merge_across_nodes": 1}
    rows = []
    for i in range(guests):
        row = {"balloon_cur": 2048 * MIB, "balloon_max": 2048 * MIB, "balloon_min": 256 * MIB,
               "mem_unused": (500 + i % 300) * MIB, "mem_free": 800 * MIB, "mem_available": 2048 * MIB}
        rows.append(EntityData({"name": f"vm{i}", "uuid": str(i)}, [row] * history))
    return Snapshot(EntityData({}, [host_row] * history), rows)


def traced_tick(policies: PolicySet, snap: Snapshot, guests: set[str]) -> object:
    """One traced run, rendered as momctl explain shows it."""
    return tick_trace(trace_run(policies.compiled, snap), guests)


def best(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.process_time()
        fn()
        times.append(time.process_time() - t0)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--guests", default="10,100,1000")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    policies = PolicySet()
    policies.load_paths(None, os.path.join(REPO, "bench", "policies", "mom-sample"))
    print(f"{'guests':>7}  {'run ms':>8}  {'traced ms':>9}  {'ratio':>5}  {'kept vars':>9}")
    for n in (int(x) for x in args.guests.split(",")):
        snap = snapshot(n)
        decisions = policies.run(snap)
        assert len(decisions.guest_controls) == n, "every guest is ballooned"
        plain = best(functools.partial(policies.run, snap), args.repeat)
        traced = best(functools.partial(traced_tick, policies, snap, set(decisions.guest_controls)),
                      args.repeat)
        kept = tick_trace(trace_run(policies.compiled, snap))
        count = len(kept["host_variables"]) + sum(len(v) for v in kept["guest_variables"].values())
        print(f"{n:>7}  {plain * 1000:>8.2f}  {traced * 1000:>9.2f}  {traced / plain:>5.2f}  {count:>9}")


if __name__ == "__main__":
    main()
