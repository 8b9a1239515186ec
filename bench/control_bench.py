#!/usr/bin/env python3
"""Control step benchmark: the wall time of one tick's balloon control for 10,
100 and 500 guests on the simulated host.

    .venv/bin/python bench/control_bench.py [--ticks N]

Two ways of making the same planned calls:
- engine: the engine's tick (Ticker.apply), every call on the pool (4 workers) under one deadline,
  as momd does;
- in place: Controller.apply, the calls one after another on one thread (what
  the whole controller did as one pool call before calls were planned).
Each with the simulator answering at once, and with a 2 ms answer (about a
libvirt setMemory round trip to a local QEMU), so the table shows both the
cost of handing calls to the pool and what running them in parallel saves.
Each tick every guest gets a new balloon target, so every guest is one call.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from typing import Any

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, ROOT)

from mom.core.clock import ManualClock  # noqa: E402
from mom.daemon.config import load_config  # noqa: E402
from mom.engine.engine import Engine, EngineSettings  # noqa: E402
from mom.hypervisors.base import GuestInfo  # noqa: E402
from mom.hypervisors.sim import SimHypervisor  # noqa: E402
from mom.policy.policy import PolicySet  # noqa: E402
from mom.sim.scenario import loads_scenario  # noqa: E402

# Alternate up and down so that every tick changes every guest's target.
POLICY = """(defvar step (if (valid (Host.GetVar "step")) (Host.GetVar "step") 0))
(Host.SetVar "step" (- 1 step))
(with Guests g (g.Control "balloon_target" (- g.balloon_max (* 10240 (+ 1 step)))))"""


class SlowSim(SimHypervisor):
    """The simulator with a fixed latency on each balloon call."""

    latency = 0.0

    def set_balloon_target(self, guest: GuestInfo, target_kib: int) -> None:
        if self.latency:
            time.sleep(self.latency)
        super().set_balloon_target(guest, target_kib)


def scenario(guests: int) -> str:
    body = "".join(f'\n[[guest]]\nname = "vm{i}"\nmax = 1024\nworkload = {{ type = "steady", level = 300 }}\n'
                   for i in range(guests))
    return f'[host]\nmemory = {guests * 1200 + 4096}\n{body}'


def measure(guests: int, latency: float, ticks: int, tmp: str) -> tuple[float, float]:
    """(median engine ms, median in-place ms) per tick."""
    clock = ManualClock()
    hv = SlowSim(loads_scenario(scenario(guests), "bench.toml"), clock=clock, tree_dir=os.path.join(tmp, str(guests)))
    hv.latency = latency
    policies = PolicySet()
    policies.set("flip", POLICY)
    settings = EngineSettings.from_config(
        load_config(None), call_timeout=30, host_collectors=("HostMemory",),
        guest_collectors=("GuestMemory", "GuestBalloon"), controllers=("Balloon",),
        proc_root=hv.proc_root, sys_root=hv.sys_root)
    engine = Engine(settings, hv, policies, clock)
    engine_ms: list[float] = []
    in_place_ms: list[float] = []
    try:
        for _ in range(ticks):
            clock.now += 10
            engine.discover()
            engine.collect_host()
            engine.collect_guests()
            snap = engine.snapshot()
            decisions = policies.run(snap)
            engine.inventory.keep_variables(decisions)
            t0 = time.perf_counter()
            actions = engine.ticker.apply(snap, decisions, clock.now)
            engine_ms.append((time.perf_counter() - t0) * 1000)
            assert len(actions) == guests and all(a.applied for a in actions), actions[:3]
            # The same tick's calls again, in place (the targets are equal to the first
            # run's, and the sim accepts them again).
            tick: Any = engine.ticker.tick_view(snap, decisions, clock.now)
            t0 = time.perf_counter()
            again = engine.ticker.controllers[0].apply(tick)
            in_place_ms.append((time.perf_counter() - t0) * 1000)
            assert len(again) == guests
    finally:
        engine.close()
        hv.close()
    return statistics.median(engine_ms), statistics.median(in_place_ms)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ticks", type=int, default=10)
    args = ap.parse_args()
    import tempfile

    print("Balloon control step, wall ms per tick (median), every guest one call")
    print(f"{'guests':>7} {'call latency':>13} {'engine (pool)':>14} {'in place':>9}")
    with tempfile.TemporaryDirectory(prefix="mom-control-bench-") as tmp:
        for latency in (0.0, 0.002):
            for guests in (10, 100, 500):
                pooled, serial = measure(guests, latency, args.ticks, tmp)
                print(f"{guests:>7} {latency * 1000:>10.0f} ms {pooled:>14.1f} {serial:>9.1f}")


if __name__ == "__main__":
    main()
