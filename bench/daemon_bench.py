#!/usr/bin/env python3
"""Daemon benchmark on the simulated host: CPU time per policy tick, memory and
thread count with 10, 100 and 500 guests.

    .venv/bin/python bench/daemon_bench.py [--ticks N]

Two measurements per size:
- in process: the engine's steps (discovery, host and guest collection, policy,
  controllers) driven tick by tick on a manual clock; CPU time per tick with
  the simulator's own model stepping subtracted, so it is MOM's work alone;
- a real momd subprocess (clock 5x) running the same scenario for a while:
  its resident memory and its thread count (from /proc/PID/status), and its
  whole CPU time per policy tick (simulator included).
Policies: MOM's earlier sample balloon and KSM policies (bench/policies/mom-sample),
which the numbers in doc/performance.md were measured with.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import tempfile
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, ROOT)

from mom.core.clock import ManualClock  # noqa: E402
from mom.daemon.config import load_config  # noqa: E402
from mom.daemon.daemon import Daemon  # noqa: E402
from mom.policy.policy import PolicySet  # noqa: E402


def scenario(guests: int, name: str = "bench") -> str:
    """An overcommitted host: guests of 1-4 GiB on a ten-minute cycle (also the
    load and lab benchmarks' host)."""
    lines = [f'name = "{name}"', "seed = 3", "", "[host]",
             f"memory = {max(8192, guests * 1400)}", "swap = 4096", "cpus = 32", ""]
    kinds = ['{ type = "daily", mean = 700, amplitude = 400, period = 600 }',
             '{ type = "steady", level = 900 }',
             '{ type = "ramp", low = 300, high = 1500, period = 600 }',
             '{ type = "burst", base = 400, peak = 1600, rate = 0.01, duration = 30 }']
    for i in range(guests):
        lines += ["[[guest]]", f'name = "vm{i:03d}"', f"max = {(1 + i % 4) * 1024}", f"min = {256 + 128 * (i % 3)}",
                  f"workload = {kinds[i % 4]}", ""]
    return "\n".join(lines)


CONFIG = """[main]
hypervisor-interface: sim
host-monitor-interval: 5
guest-monitor-interval: 5
guest-manager-interval: 5
policy-engine-interval: 10
controllers: Balloon, KSM
policy-dir: {root}/bench/policies/mom-sample
[sim]
scenario: {scenario}
speed: {speed}
[logging]
log: {log}
verbosity: info
[host]
collectors: HostMemory, HostKSM, HostCpu
[guest]
collectors: GuestMemory, GuestBalloon
"""




def in_process(conf: str, ticks: int) -> tuple[float, float, float]:
    """(MOM CPU ms per tick, policy eval ms per tick, simulator CPU ms per tick)."""
    config = load_config(conf)
    policies = PolicySet()
    policies.load_paths(None, config.main.policy_dir)
    clock = ManualClock(time.time())  # time is driven by hand, tick by tick
    daemon = Daemon(config, policies, clock=clock)
    engine, model = daemon.engine, daemon.hypervisor.model  # type: ignore[attr-defined]
    evals: list[float] = []
    engine.add_tick_listener(lambda status: evals.append(status.last_tick.eval_seconds))  # type: ignore[union-attr]
    mom_cpu = sim_cpu = 0.0
    try:
        for i in range(ticks + 3):
            clock.now += 10
            s0 = time.process_time()
            model.advance_to(clock.now)  # the simulator's work, kept apart
            s1 = time.process_time()
            engine.discover()
            engine.collect_host()
            engine.collect_guests()
            engine.run_policy()
            s2 = time.process_time()
            if i >= 3:  # warm-up ticks excluded
                sim_cpu += s1 - s0
                mom_cpu += s2 - s1
    finally:
        daemon.close()
    n = ticks
    return mom_cpu * 1000 / n, sum(evals[3:]) * 1000 / n, sim_cpu * 1000 / n


def proc_status(pid: int) -> dict[str, str]:
    with open(f"/proc/{pid}/status") as f:
        return dict(line.split(":", 1) for line in f if ":" in line)


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def subprocess_run(conf_dir: str, scen: str, seconds: float) -> tuple[int, int, float, int]:
    """(RSS KiB, threads, CPU ms per policy tick, ticks) of a real momd."""
    log = os.path.join(conf_dir, "momd.log")
    conf = os.path.join(conf_dir, "sub.conf")
    with open(conf, "w") as f:
        f.write(CONFIG.format(root=ROOT, scenario=scen, speed=5, log=log))
    proc = subprocess.Popen([sys.executable, "-m", "mom.cli.momd", "-c", conf], cwd=ROOT)
    try:
        time.sleep(1.5)
        c0 = cpu_seconds(proc.pid)
        t0 = _ticks(log)
        time.sleep(seconds)
        c1 = cpu_seconds(proc.pid)
        t1 = _ticks(log)
        st = proc_status(proc.pid)
        rss = int(st["VmRSS"].split()[0])
        threads = int(st["Threads"])
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(10)
    ticks = max(1, t1 - t0)
    return rss, threads, (c1 - c0) * 1000 / ticks, ticks


def _ticks(log: str) -> int:
    try:
        with open(log) as f:
            found = re.findall(r"tick (\d+):", f.read())
        return int(found[-1]) if found else 0
    except FileNotFoundError:
        return 0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ticks", type=int, default=20)
    ap.add_argument("--seconds", type=float, default=6.0, help="how long each momd subprocess is measured")
    args = ap.parse_args()
    print(f"{'guests':>6} {'MOM cpu/tick':>13} {'policy eval':>12} {'sim cpu/tick':>13} "
          f"{'momd RSS':>9} {'threads':>8} {'momd cpu/tick':>14}")
    with tempfile.TemporaryDirectory() as tmp:
        for guests in (10, 100, 500):
            scen = os.path.join(tmp, f"s{guests}.toml")
            with open(scen, "w") as f:
                f.write(scenario(guests))
            conf = os.path.join(tmp, f"c{guests}.conf")
            with open(conf, "w") as f:
                f.write(CONFIG.format(root=ROOT, scenario=scen, speed=1, log=os.path.join(tmp, "x.log")))
            mom_ms, eval_ms, sim_ms = in_process(conf, args.ticks)
            rss, threads, sub_ms, _ = subprocess_run(tmp, scen, args.seconds)
            print(f"{guests:>6} {mom_ms:10.1f} ms {eval_ms:9.2f} ms {sim_ms:10.1f} ms "
                  f"{rss / 1024:6.1f} MiB {threads:>8} {sub_ms:11.1f} ms")
    print("\nMOM cpu/tick: discovery + collection + policy + controllers, simulator excluded.")
    print("momd cpu/tick: a real momd's whole CPU time per policy tick, simulator included.")


if __name__ == "__main__":
    main()
