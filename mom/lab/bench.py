"""Many runs: every scenario under every policy for every seed, in parallel processes,
and the capacity search.

Runs are independent, so they go to a ProcessPoolExecutor (one worker per core
by default); results come back in completion order and are sorted into the
order of the plan, so the report does not depend on which worker was faster.
"""

from __future__ import annotations

import dataclasses
import os
import uuid as uuidlib
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any

from mom.core.errors import MomError
from mom.lab.runner import LabError, PolicySpec, RunResult, RunSpec, quiet_logging, run
from mom.sim.scenario import GuestSpec, Scenario

Progress = Callable[[RunResult], None]
_COPY_NS = uuidlib.UUID("8f1d3c52-5a7e-4b8e-9d0c-6c61622d6d6f")


class RunFailed(MomError):
    """A run raised: the message names the run and the error (one line)."""


@dataclass(frozen=True)
class ScenarioEntry:
    label: str          # as reports name it (the file's base name)
    scenario: Scenario


def plan_runs(scenarios: list[ScenarioEntry], policies: list[PolicySpec], seeds: int, hours: float, *,
              settings: dict[str, str] | None = None, config_file: str | None = None,
              sample_s: float | None = None, series: bool = False) -> list[RunSpec]:
    """Every scenario x policy x seed. Seeds are the scenario's own seed and the
    next seeds-1 numbers. ``series``: keep the time series of each first seed (for plots)."""
    specs = []
    for entry in scenarios:
        for policy in policies:
            for i in range(seeds):
                specs.append(RunSpec(entry.scenario, entry.label, policy, entry.scenario.seed + i, hours,
                                     settings=tuple(sorted((settings or {}).items())), config_file=config_file,
                                     sample_s=sample_s, keep_series=series and i == 0))
    return specs


def _worker_init() -> None:
    quiet_logging()


def _run_one(spec: RunSpec) -> RunResult:
    try:
        return run(spec)
    except LabError:
        raise
    except Exception as e:  # noqa: BLE001 - named and sent back as one line
        raise RunFailed(f"{spec.scenario_label} / {spec.policy.name} / seed {spec.seed}: "
                        f"{type(e).__name__}: {e}") from None


def run_many(specs: list[RunSpec], jobs: int | None = None, progress: Progress | None = None) -> list[RunResult]:
    """Run every spec (jobs worker processes; 1: in this process) and return the
    results in the specs' order. Raises RunFailed or LabError for the first run that
    fails (the other runs are cancelled)."""
    jobs = jobs or os.cpu_count() or 1
    results: dict[int, RunResult] = {}
    if jobs == 1 or len(specs) == 1:
        quiet_logging()
        for i, spec in enumerate(specs):
            results[i] = _run_one(spec)
            if progress:
                progress(results[i])
        return [results[i] for i in range(len(specs))]
    with ProcessPoolExecutor(max_workers=min(jobs, len(specs)), initializer=_worker_init) as pool:
        pending: dict[Future[Any], int] = {pool.submit(_run_one, spec): i for i, spec in enumerate(specs)}
        try:
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    i = pending.pop(future)
                    try:
                        results[i] = future.result()
                    except BrokenProcessPool:
                        spec = specs[i]
                        raise RunFailed(f"{spec.scenario_label} / {spec.policy.name} / seed {spec.seed}: "
                                        "its worker process died (out of memory?)") from None
                    if progress:
                        progress(results[i])
        finally:
            for future in pending:
                future.cancel()
    return [results[i] for i in range(len(specs))]


# -- capacity ----------------------------------------------------------------------

def with_copies(scenario: Scenario, template: str, copies: int) -> Scenario:
    """The scenario with ``copies`` more guests like ``template`` (named
    TEMPLATE-cN, with their own uuids). Raises LabError for an unknown template."""
    spec = next((g for g in scenario.guests if g.name == template), None)
    if spec is None:
        names = ", ".join(g.name for g in scenario.guests)
        raise LabError(f"scenario {scenario.name}: no guest {template!r} to copy (guests: {names})")
    taken = {g.name for g in scenario.guests}
    extra: list[GuestSpec] = []
    n = 0
    while len(extra) < copies:
        n += 1
        name = f"{template}-c{n}"
        if name in taken:
            continue
        extra.append(dataclasses.replace(spec, name=name, uuid=str(uuidlib.uuid5(_COPY_NS, f"{scenario.name}/{name}"))))
    return dataclasses.replace(scenario, guests=scenario.guests + tuple(extra))


def held(results: Iterable[RunResult], stall_budget_s: float) -> bool:
    """Every guest of every run stayed within the stall budget, and nothing was OOM-killed."""
    for r in results:
        f = r.figures
        if f["stall_s_worst_guest"] > stall_budget_s or f["host_oom_kills"] or f["guest_oom_kills"]:
            return False
    return True


@dataclass
class CapacityResult:
    scenario: str
    policy: str
    template: str
    base_guests: int
    most_guests: int | None          # None: not even the scenario as written held
    probes: dict[int, bool]          # guest count -> held

    def to_json(self) -> dict[str, Any]:
        return {"mode": "capacity", "scenario": self.scenario, "policy": self.policy, "template": self.template,
                "base_guests": self.base_guests, "most_guests": self.most_guests,
                "probes": {str(k): v for k, v in sorted(self.probes.items())}}


@dataclass
class _Search:
    """Doubling the copies until the budget breaks, then bisecting."""

    base: int
    limit: int
    probes: dict[int, bool] = dataclasses.field(default_factory=dict)

    def next_count(self) -> int | None:
        good = [n for n, ok in self.probes.items() if ok]
        bad = [n for n, ok in self.probes.items() if not ok]
        lo = max(good, default=None)
        hi = min(bad, default=None)
        if lo is None:
            return self.base if hi is None else None
        if hi is None:
            if lo >= self.limit:
                return None
            return min(self.limit, self.base + max(1, 2 * (lo - self.base)))
        return (lo + hi) // 2 if hi - lo > 1 else None

    def most(self) -> int | None:
        return max((n for n, ok in self.probes.items() if ok), default=None)


def capacity(entry: ScenarioEntry, template: str, policies: list[PolicySpec], seeds: int, hours: float,
             stall_budget_s: float, max_guests: int, *, settings: dict[str, str] | None = None,
             config_file: str | None = None, sample_s: float | None = None, jobs: int | None = None,
             progress: Progress | None = None) -> list[CapacityResult]:
    """The most guests each policy held on the scenario with copies of ``template``
    added, within the per-guest stall budget and without OOM kills, up to max_guests.
    Policies are searched side by side: each round runs every policy's next count
    (all seeds) in parallel. Raises LabError, RunFailed."""
    with_copies(entry.scenario, template, 0)  # checks the template now
    base = len(entry.scenario.guests)
    searches = {p.name: _Search(base, max(base, max_guests)) for p in policies}
    by_name = {p.name: p for p in policies}
    while True:
        round_specs: list[tuple[str, int, RunSpec]] = []
        for name, search in searches.items():
            count = search.next_count()
            if count is None:
                continue
            scenario = with_copies(entry.scenario, template, count - base)
            for spec in plan_runs([ScenarioEntry(f"{entry.label}+{count - base}", scenario)], [by_name[name]],
                                  seeds, hours, settings=settings, config_file=config_file, sample_s=sample_s):
                round_specs.append((name, count, spec))
        if not round_specs:
            break
        results = run_many([s for _, _, s in round_specs], jobs, progress)
        outcome: dict[tuple[str, int], list[RunResult]] = {}
        for (name, count, _), result in zip(round_specs, results, strict=True):
            outcome.setdefault((name, count), []).append(result)
        for (name, count), rs in outcome.items():
            searches[name].probes[count] = held(rs, stall_budget_s)
    return [CapacityResult(entry.label, p.name, template, base, searches[p.name].most(), searches[p.name].probes)
            for p in policies]
