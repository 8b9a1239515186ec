"""One benchmark run: a scenario under a policy for one seed, on a clock that jumps.

The run is MOM as momd runs it (the real Engine, collectors reading the
simulator's /proc and /sys tree, the policy, the controllers calling the
SimHypervisor) except for time: a ManualClock is moved straight to the next
moment something is due (an engine step or a sample), so nothing sleeps.
Steps run in the order and on the intervals of the engine's scheduler
(``EngineSettings.schedule``).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from mom.core.clock import ManualClock
from mom.core.errors import MomError
from mom.daemon.config import Config, ConfigError, load_config
from mom.engine.engine import Engine, EngineSettings
from mom.engine.status import EngineStatus
from mom.lab.metrics import RunMetrics
from mom.policy.errors import PolicyError
from mom.policy.policy import DEFAULT_POLICY_NAME, PolicySet, policy_name, read_policy_paths
from mom.sim.proctree import ProcTree
from mom.sim.scenario import Scenario

CLOCK_START = 1_000_000.0  # the clock's epoch; runs report time since the scenario's start

# What the lab host runs unless a --config says otherwise: MOM's default intervals (the
# configuration schema's, not repeated here), every collector the policies of MOM, vdsm
# and the peers read, every controller they set; and virtio-mem (optional: most guests
# have no device) so that a policy can set mem_requested_size.
LAB_SETTINGS: dict[str, str] = {
    "main.hypervisor-interface": "sim",
    "main.controllers": "Balloon, KSM, CpuTune, IoTune, VirtioMem",
    "host.collectors": "HostMemory, HostKSM, HostCpu, HostPressure",
    "guest.collectors": "GuestQemuProc, GuestMemory, GuestBalloon, GuestCpuTune, GuestIoTune, GuestVirtioMemOptional",
}


class LabError(MomError):
    """A bad scenario, policy or setting: one line for the user."""


@dataclass(frozen=True)
class PolicySpec:
    """A policy as the bench runs it: its label and its named texts (none: no manager)."""

    name: str
    texts: tuple[tuple[str, str], ...] = ()      # (policy name, text), as a PolicySet holds them
    origins: tuple[tuple[str, str], ...] = ()    # (policy name, file), for error positions
    paths: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        return not self.texts


@dataclass(frozen=True)
class RunSpec:
    """Everything a worker process needs for one run (picklable)."""

    scenario: Scenario
    scenario_label: str
    policy: PolicySpec
    seed: int
    hours: float
    settings: tuple[tuple[str, str], ...] = ()   # config overrides on top of LAB_SETTINGS
    config_file: str | None = None
    sample_s: float | None = None                # None: the engine's shortest collection interval
    keep_series: bool = False


def lab_config(config_file: str | None = None, settings: dict[str, str] | None = None) -> Config:
    """The lab host's configuration: LAB_SETTINGS (or a mom.conf), the simulator as
    hypervisor, then ``settings``. Raises LabError."""
    overrides = {} if config_file else dict(LAB_SETTINGS)
    overrides["main.hypervisor-interface"] = "sim"
    overrides.update(settings or {})
    try:
        return load_config(config_file, overrides)
    except ConfigError as e:
        raise LabError(str(e)) from None


def policy_set(config: Config, spec: PolicySpec) -> PolicySet:
    """A PolicySet holding the spec's texts, validated as momd validates. Raises LabError."""
    from mom.daemon.policy_checks import policy_checks

    policies = PolicySet(checks=policy_checks(config))
    if spec.empty:
        return policies
    try:
        policies.replace_all(dict(spec.texts), dict(spec.origins))
    except PolicyError as e:
        raise LabError(f"policy {spec.name}: {_one_line(e)}") from None
    return policies


def _one_line(e: PolicyError) -> str:
    text = e.render() if hasattr(e, "render") else str(e)
    return text.splitlines()[0] if text else type(e).__name__


def load_policy_spec(name: str, paths: list[str], config: Config) -> PolicySpec:
    """Read a policy for the bench: each path a *.policy file or a directory of them,
    loaded together; a file is named by its base name, a lone file as momd's -r
    names it. No path: no manager. Validated now. Raises LabError."""
    texts: dict[str, str] = {}
    origins: dict[str, str] = {}
    for path in paths:
        if not os.path.exists(path):
            raise LabError(f"policy {name}: no such file or directory: {path}")
        try:
            sources = read_policy_paths([path])
        except OSError as e:
            raise LabError(f"policy {name}: cannot read {e.filename or path}: {e.strerror}") from None
        if os.path.isdir(path) and not sources:
            raise LabError(f"policy {name}: no *.policy files in {path}")
        for src in sources:
            key = policy_name(src.name)
            if len(paths) == 1 and not os.path.isdir(path):
                key = DEFAULT_POLICY_NAME
            texts[key] = src.text
            origins[key] = src.name
    spec = PolicySpec(name, tuple(sorted(texts.items())), tuple(sorted(origins.items())), tuple(paths))
    policy_set(config, spec)
    return spec


@dataclass
class RunResult:
    """One run's figures (deterministic for a seed) and what it cost (not)."""

    scenario: str
    policy: str
    seed: int
    hours: float
    guests: int
    figures: dict[str, Any]
    policy_errors: int
    wall_s: float
    cpu_s: float = 0.0   # the run's CPU time in its process: its cost on a busy host too
    series: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        out = {"scenario": self.scenario, "policy": self.policy, "seed": self.seed, "hours": self.hours,
               "guests": self.guests, **self.figures, "policy_errors": self.policy_errors,
               "wall_s": round(self.wall_s, 3), "cpu_s": round(self.cpu_s, 3),
               "sim_s_per_s": round(self.hours * 3600 / self.wall_s, 1) if self.wall_s > 0 else None}
        return out


def run(spec: RunSpec) -> RunResult:
    """Run one scenario under one policy; the same spec gives the same figures. Raises LabError."""
    from mom.hypervisors.sim import SimHypervisor

    started = time.perf_counter(), time.process_time()
    config = lab_config(spec.config_file, dict(spec.settings))
    policies = policy_set(config, spec.policy)
    clock = ManualClock(CLOCK_START)
    # A temporary tree owned here: removed after the run, or by a later run when this
    # process was killed (its marker is no longer locked).
    owner = ProcTree.temporary(tree_base())
    try:
        hv = SimHypervisor(spec.scenario, seed=spec.seed, clock=clock, tree_dir=owner.root)
        try:
            return _run(spec, config, policies, clock, hv, started)
        finally:
            hv.close()
    finally:
        owner.close()


def tree_base() -> str | None:
    """Where the simulator's tree goes: memory (/dev/shm) when there is one, as the
    collectors read and the simulator rewrites it every few simulated seconds."""
    shm = "/dev/shm"
    return shm if os.path.isdir(shm) and os.access(shm, os.W_OK) else None


def _run(spec: RunSpec, config: Config, policies: PolicySet, clock: ManualClock, hv: Any,
         started: tuple[float, float]) -> RunResult:
    errors = [0]

    def on_tick(status: EngineStatus) -> None:
        if status.last_tick is not None and not status.last_tick.decisions.ok:
            errors[0] += 1

    # The engine sees the simulated host through its tree, as momd does.
    settings = EngineSettings.from_config(config, proc_root=hv.proc_root, sys_root=hv.sys_root)
    engine = Engine(settings, hv, policies, clock, pool=InlinePool(), on_tick=on_tick)
    metrics = RunMetrics(keep_series=spec.keep_series)
    try:
        _drive(engine, hv, clock, metrics, spec.hours * 3600.0, spec.sample_s)
    finally:
        engine.close()
    return RunResult(scenario=spec.scenario_label, policy=spec.policy.name, seed=spec.seed, hours=spec.hours,
                     guests=len(spec.scenario.guests), figures=metrics.result(), policy_errors=errors[0],
                     wall_s=time.perf_counter() - started[0], cpu_s=time.process_time() - started[1],
                     series=metrics.series if spec.keep_series else None)


class InlinePool:
    """The engine's call pool, run in the caller's thread. The simulator's calls
    never hang, so the pool's threads would only add two thread switches per call
    (on a busy host more than the call itself) and make a run's speed depend on
    the scheduler. The engine's deadlines and fault paths are unchanged."""

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future[Any]:
        future: Future[Any] = Future()
        future.set_running_or_notify_cancel()
        try:
            future.set_result(fn(*args))
        except BaseException as e:  # noqa: BLE001 - handed to the engine through the future, as CallPool does
            future.set_exception(e)
        return future

    def start(self) -> None:
        pass

    def close(self) -> None:
        pass


def _drive(engine: Engine, hv: Any, clock: ManualClock, metrics: RunMetrics, seconds: float,
           sample_s: float | None) -> None:
    """Jump the clock from one due moment to the next until ``seconds`` have passed:
    at a sample, advance the model and observe it; then run the engine's due steps."""
    s = engine.settings
    if sample_s is None:  # observe when MOM collects: the tree is written once per observation
        sample_s = min(s.host_interval, s.guest_interval)
    tasks = s.schedule()
    due = {name: 0.0 for name, _ in tasks}
    next_sample = 0.0
    metrics.add(hv.model.observe())
    while True:
        now = min(next_sample, *due.values())
        if now > seconds:
            break
        clock.now = CLOCK_START + now
        if now >= next_sample:
            hv.sync()
            if now > 0:
                metrics.add(hv.model.observe())
            next_sample += sample_s
        for name, interval in tasks:
            if now >= due[name]:
                engine.step(name)  # as the scheduler: a failing step is a fault, not the end
                due[name] += interval


def quiet_logging() -> None:
    """Runs log nothing below errors: a bench prints its own report."""
    logging.getLogger("mom").setLevel(logging.CRITICAL)
