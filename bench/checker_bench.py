#!/usr/bin/env python3
"""Policy check benchmark: the time of `momctl policy check` (parse, compile,
static checks, trial evaluation; check_policy with every registered collector
and controller) on generated policies of 1,000 to 200,000 definitions.

    .venv/bin/python bench/checker_bench.py [--sizes 1000,5000,...] [--repeat N]

Prints a table: the time per definition stays flat when the check is linear
in the size of the policy. 'clean' is a policy without faults (so the trial
evaluation runs); 'with typos' has a misspelt variable in 1% of the
definitions (each an error with a "did you mean" among all the globals) and a
free variable in 1% of the functions (warnings). Times are the process's CPU
time, the best of N: on a shared machine wall-clock time mostly measures the
neighbours. The trial evaluation runs
with a larger budget than the default (time, steps, bytes built): the largest
generated policies do more in one evaluation than the default allows, and the
point here is the checker's growth, not the budget.
"""

from __future__ import annotations

import argparse
import functools
import gc
import os
import sys
import time
from collections.abc import Callable
from typing import TypeVar

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from mom.cli.policy_cmds import registry_checks
from mom.policy.compiler import Budget
from mom.policy.errors import Source
from mom.policy.validate import check_policy

KINDS = 5
T = TypeVar("T")


def definition(i: int, typos: bool) -> str:
    """The i-th definition; every KINDS in a row use each other, as policies do."""
    kind = i % KINDS
    typo = typos and i % 100 == 4
    if kind == 0:
        return f"(defvar limit{i} (* {i} 0.5))"
    if kind == 1:
        free = "unbound_here" if typos and i % 100 == 1 else "x"
        return (f"(def shrink{i} (guest x) {{\n"
                f"    (defvar target (+ {free} limit{i - 1}))\n"
                f"    (let ((a target) (b (guest.StatAvg \"mem_unused\")))\n"
                f"        (if (> a b) (guest.Control \"balloon_target\" a) 0))\n"
                f"}})")
    if kind == 2:
        return f"(with Guests guest (shrink{i - 1} guest guest.balloon_cur))"
    if kind == 3:
        return f"(def spare{i} (n) (with Guests vm (+ n (vm.StatAvg \"mem_free\"))))"
    name = f"limt{i - 4}" if typo else f"limit{i - 4}"
    return f"(if (> (Host.StatAvg \"mem_free\") {name}) (Host.Control \"ksm_run\" 1) (spare{i - 1} 2))"


def policy(n: int, typos: bool) -> Source:
    return Source(f"gen-{n}.policy", "\n".join(definition(i, typos) for i in range(n)) + "\n")


def best_seconds(fn: Callable[[], T], repeat: int) -> tuple[float, T]:
    times = []
    for _ in range(repeat):
        gc.collect()  # the previous run's garbage is not this run's work
        t0 = time.process_time()
        result = fn()
        times.append(time.process_time() - t0)
    return min(times), result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1000,2000,5000,10000,20000,50000,100000,200000")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    checks = registry_checks(None, [])
    budget = Budget(max_seconds=600, max_steps=10**8, max_alloc=1 << 32)
    print(f"{'defs':>8} {'lines':>8} {'clean s':>9} {'us/def':>7} {'typos s':>9} {'us/def':>7} "
          f"{'errors':>7} {'warnings':>8}")
    for n in (int(s) for s in args.sizes.split(",")):
        clean, typos = policy(n, False), policy(n, True)
        repeat = args.repeat if n <= 20000 else 2
        t_clean, report = best_seconds(functools.partial(check_policy, [clean], checks, budget), repeat)
        assert not report.findings, report.findings[:3]
        t_typos, report = best_seconds(functools.partial(check_policy, [typos], checks, budget), repeat)
        errors, warnings = len(report.errors), len(report.warnings)
        print(f"{n:>8} {clean.text.count(chr(10)):>8} {t_clean:9.3f} {t_clean / n * 1e6:7.1f} "
              f"{t_typos:9.3f} {t_typos / n * 1e6:7.1f} {errors:>7} {warnings:>8}")


if __name__ == "__main__":
    main()
