#!/usr/bin/env python3
"""Policy engine benchmark: parse time of vdsm's policy set and evaluation time
per tick at 10, 100, 500 and 1,000 guests (10 history rows), host under and not
under memory pressure; then the same for MOM's default policy (doc/policies).

    .venv/bin/python bench/policy_bench.py [--policies DIR] [--repeat N]

Prints a table. 'eval' is the evaluation alone (what `momctl policy run
--timing` reports); 'run' adds building the entities from the snapshot and
collecting the decisions. Times are the median of N repeats.
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import sys
import time
from collections.abc import Callable

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from checker_bench import best_seconds  # bench/ is on sys.path when run as a script

from mom.policy.compiled import CompiledPolicy
from mom.policy.errors import Source
from mom.policy.generate import generate_snapshot
from mom.policy.parser import parse
from mom.policy.policy import compile_policy, read_policy_paths
from mom.policy.snapshot import Snapshot

PARAMETERS = "(set ksmEnabled True)\n(set balloonEnabled True)\n(set cpuTuneEnabled True)\n(set ioTuneEnabled True)\n"


def median_ms(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def evaluate_seconds(policy: CompiledPolicy, snap: Snapshot) -> float:
    """One evaluation over the snapshot's entities; building the entities is not counted."""
    host, gs = snap.entities()
    t0 = time.perf_counter()
    policy.evaluate(host, gs)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--policies", default=os.path.join(os.path.dirname(__file__), "../../shared/policies/vdsm"),
                    help="vdsm's policy directory")
    ap.add_argument("--default", default=os.path.join(os.path.dirname(__file__), "../doc/policies"),
                    help="MOM's default policy directory")
    ap.add_argument("--repeat", type=int, default=15)
    args = ap.parse_args()

    sources = read_policy_paths([args.policies])
    sources.insert(1, Source("01-parameters", PARAMETERS))  # as vdsm adds it at run time
    lines = sum(s.text.count("\n") for s in sources)
    parse_ms = median_ms(lambda: [parse(s) for s in sources], args.repeat * 4)
    compile_ms = median_ms(lambda: compile_policy(sources), args.repeat * 4)
    print(f"vdsm policy set: {len(sources)} sources, {lines} lines")
    print(f"  parse            {parse_ms:7.2f} ms   (target <= 2 ms; the original: ~13 ms)")
    print(f"  parse + compile  {compile_ms:7.2f} ms")
    print()
    policy_table(compile_policy(sources), args.repeat)
    print()
    print("target: 1,000 guests in <= 60 ms; the original: ~6,300 ms (6 ms per guest)")
    print()
    default = read_policy_paths([args.default])
    print(f"MOM's default policy ({args.default}): {len(default)} sources, "
          f"{sum(s.text.count(chr(10)) for s in default)} lines")
    policy_table(compile_policy(default), args.repeat)
    print()
    print("target: 1,000 guests in < 50 ms")


def policy_table(policy: CompiledPolicy, repeat: int) -> None:
    """Evaluation and run times per guest count, with and without host pressure.
    'cpu ms' is the best process time of the repeats (checker_bench's timer): the
    figure that a busy machine disturbs least."""
    print(f"{'guests':>7} {'pressure':>9} {'eval ms':>9} {'run ms':>9} {'cpu ms':>9} {'us/guest':>9} {'controls':>9}")
    for guests in (10, 100, 500, 1000):
        for pressure in (False, True):
            snap = generate_snapshot(guests, rows=10, pressure=pressure, seed=guests)
            evals = []
            for _ in range(repeat):
                evals.append(evaluate_seconds(policy, snap) * 1000)
            run_ms = median_ms(functools.partial(policy.run, snap), repeat)
            cpu_ms = best_seconds(functools.partial(policy.run, snap), repeat)[0] * 1000
            decisions = policy.run(snap)
            assert decisions.ok, decisions.error
            n_controls = sum(len(c) for c in decisions.guest_controls.values()) + len(decisions.host_controls)
            eval_ms = statistics.median(evals)
            print(f"{guests:>7} {'yes' if pressure else 'no':>9} {eval_ms:9.2f} {run_ms:9.2f} {cpu_ms:9.2f} "
                  f"{eval_ms * 1000 / guests:9.1f} {n_controls:>9}")


if __name__ == "__main__":
    main()
