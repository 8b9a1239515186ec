"""momctl bench: compare policies on the simulated host.

    momctl bench --scenario FILE... --policy NAME=PATH[+PATH...]... [--baselines]
                 [--seeds N] [--hours H] [--json OUT] [--plots DIR] [--markdown OUT]
                 [--jobs N] [--config FILE] [--set SECTION.KEY=VALUE]...
                 [--capacity --template GUEST --stall-budget S --max-guests N]

Each scenario (a directory: its *.toml files) runs under each policy for
each seed (the scenario's seed and the next N-1) with MOM's real engine,
collectors and controllers on the simulator, time jumping instead of passing. A policy is a *.policy file or a
directory of them; several paths joined by '+' are loaded together as named
policies (a file under its base name), e.g. vdsm's set plus the parameters vdsm
would set over RPC: vdsm=/path/to/vdsm+bench/policies/vdsm-enable. NAME= (no
path) runs with no manager. --baselines adds: none, default (doc/policies),
sample (MOM's earlier sample policies), proxmox and squeezed (bench/policies).

Prints a Markdown table per scenario (figures averaged over the seeds);
--json writes one JSON line per run, --plots one host and one guest chart per
scenario and policy (first seed). --capacity adds copies of a guest until one
guest stalls longer than --stall-budget seconds in a run (or anything is
OOM-killed) and reports the most guests each policy held.

Exit status: 0 done, 1 a run failed, 2 a bad scenario, policy or option (one line).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from typing import Any

from mom.core.errors import MomError
from mom.lab.runner import RunResult

# MOM's default (doc/policies) and what it is measured against: no manager, the
# sample policies MOM shipped before it (bench/policies/mom-sample), Proxmox's and
# Xen squeezed's algorithms restated in the policy language.
BASELINE_POLICIES = (("none", ()), ("default", ("doc/policies",)), ("sample", ("bench/policies/mom-sample",)),
                     ("proxmox", ("bench/policies/proxmox.policy",)), ("squeezed", ("bench/policies/squeezed.policy",)))


class UsageError(MomError):
    """A bad argument: one line, exit status 2."""


def source_root() -> str:
    """The source tree this momctl runs from (where doc/ and bench/ are)."""
    return os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def parse_policy_arg(text: str) -> tuple[str, list[str]]:
    """NAME=PATH[+PATH...], NAME= (no manager) or PATH (named by its base name)."""
    if "=" in text:
        name, _, rest = text.partition("=")
        name = name.strip()
        if not name:
            raise UsageError(f"--policy {text!r}: the name before '=' is empty")
    else:
        rest = text
        base = os.path.basename(os.path.normpath(text))
        name = base[: -len(".policy")] if base.endswith(".policy") else base
    paths = [p for p in rest.split("+") if p]
    return name, paths


def _policy_args(args: argparse.Namespace) -> list[tuple[str, list[str]]]:
    wanted: list[tuple[str, list[str]]] = []
    if args.baselines:
        root = source_root()
        for name, paths in BASELINE_POLICIES:
            full = [os.path.join(root, p) for p in paths]
            missing = [p for p in full if not os.path.exists(p)]
            if missing:
                raise UsageError(f"--baselines: {missing[0]} not found (run momctl bench from a source tree)")
            wanted.append((name, full))
    wanted.extend(parse_policy_arg(p) for p in args.policy or [])
    if not wanted:
        raise UsageError("give at least one --policy NAME=PATH (or --baselines)")
    names = [n for n, _ in wanted]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise UsageError(f"policy name {dup[0]!r} given twice")
    return wanted


def _settings(args: argparse.Namespace) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in args.set or []:
        key, eq, value = item.partition("=")
        if not eq or "." not in key:
            raise UsageError(f"--set {item!r}: expected SECTION.KEY=VALUE")
        out[key.strip()] = value.strip()
    return out


def _load(args: argparse.Namespace) -> tuple[list[Any], list[Any], dict[str, str]]:
    """Scenarios and policies, checked. Raises UsageError, LabError."""
    from mom.lab.bench import ScenarioEntry
    from mom.lab.runner import lab_config, load_policy_spec
    from mom.sim.scenario import ScenarioError, load_scenario

    bad_jobs = args.jobs is not None and args.jobs < 1
    bad_sample = args.sample is not None and args.sample <= 0
    if args.seeds < 1 or args.hours <= 0 or bad_jobs or bad_sample:
        raise UsageError("--seeds and --jobs must be at least 1, --hours and --sample positive")
    settings = _settings(args)
    config = lab_config(args.config, settings)
    if config.main.hypervisor_interface != "sim":
        raise UsageError("the bench runs on the simulator: hypervisor-interface must stay sim")
    scenarios = []
    labels: set[str] = set()
    for path in _scenario_files(args.scenario):
        try:
            scenario = load_scenario(path)
        except ScenarioError as e:
            raise UsageError(str(e)) from None
        label = os.path.splitext(os.path.basename(path))[0]
        if label in labels:
            label = path
        labels.add(label)
        scenarios.append(ScenarioEntry(label, scenario))
    policies = [load_policy_spec(name, paths, config) for name, paths in _policy_args(args)]
    return scenarios, policies, settings


def _scenario_files(paths: list[str]) -> list[str]:
    """The files given, a directory standing for its *.toml files in name order."""
    files: list[str] = []
    for path in paths:
        if os.path.isdir(path):
            found = sorted(os.path.join(path, n) for n in os.listdir(path) if n.endswith(".toml"))
            if not found:
                raise UsageError(f"no *.toml scenario files in {path}")
            files.extend(found)
        else:
            files.append(path)
    return files


class _Progress:
    """A rich progress bar on a terminal; otherwise a plain line per finished run."""

    def __init__(self, total: int, enabled: bool) -> None:
        self.total = total
        self.done = 0
        self.bar: Any = None
        if enabled and sys.stderr.isatty():
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
            self.bar = Progress(TextColumn("bench"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                                TextColumn("{task.description}"), transient=True)
            self.task = self.bar.add_task("", total=total)
            self.bar.start()
        self.enabled = enabled

    def grow(self, more: int) -> None:
        self.total += more
        if self.bar is not None:
            self.bar.update(self.task, total=self.total)

    def __call__(self, r: RunResult) -> None:
        self.done += 1
        what = f"{r.scenario} / {r.policy} / seed {r.seed}"
        if self.bar is not None:
            self.bar.update(self.task, advance=1, description=what)
        elif self.enabled:
            print(f"bench: {self.done}/{self.total} {what} ({r.wall_s:.1f} s)", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()


def _write(path: str, write: Callable[[Any], None]) -> None:
    try:
        with open(path, "w", encoding="utf-8") as f:
            write(f)
    except OSError as e:
        raise UsageError(f"cannot write {path}: {e.strerror}") from None


def cmd_bench(args: argparse.Namespace) -> int:
    from mom.lab.bench import RunFailed, plan_runs, run_many
    from mom.lab.report import markdown, plot_run, write_json_lines
    from mom.lab.runner import LabError

    started = time.perf_counter()
    try:
        scenarios, policies, settings = _load(args)
        for path in (args.json, args.markdown):
            if path and not os.path.isdir(os.path.dirname(os.path.abspath(path))):
                raise UsageError(f"cannot write {path}: its directory does not exist")
        if args.capacity:
            return _capacity(args, scenarios, policies, settings)
        specs = plan_runs(scenarios, policies, args.seeds, args.hours, settings=settings, config_file=args.config,
                          sample_s=args.sample, series=bool(args.plots))
        progress = _Progress(len(specs), not args.quiet)
        try:
            results = run_many(specs, args.jobs, progress)
        finally:
            progress.close()
        table = markdown(results)
        if args.markdown:
            _write(args.markdown, lambda f: f.write(table))
        if args.json:
            _write(args.json, lambda f: write_json_lines(f, (r.to_json() for r in results)))
        if args.plots:
            try:
                for r in results:
                    plot_run(r, args.plots)
            except OSError as e:
                raise UsageError(f"cannot write plots in {args.plots}: {e.strerror}") from None
        print(table)
        if not args.quiet:
            simulated = sum(r.hours for r in results) * 3600
            cpu = sum(r.cpu_s for r in results)
            print(f"bench: {len(results)} runs, {simulated:,.0f} simulated s in "
                  f"{time.perf_counter() - started:.1f} s ({cpu:.1f} CPU s in the runs)", file=sys.stderr)
        return 0
    except (UsageError, LabError) as e:
        print(f"momctl bench: {e}", file=sys.stderr)
        return 2
    except RunFailed as e:
        print(f"momctl bench: run failed: {e}", file=sys.stderr)
        return 1


def _capacity(args: argparse.Namespace, scenarios: list[Any], policies: list[Any], settings: dict[str, str]) -> int:
    from mom.lab.bench import capacity
    from mom.lab.report import capacity_markdown, write_json_lines

    if args.stall_budget is None or args.stall_budget < 0:
        raise UsageError("--capacity needs --stall-budget SECONDS (per guest and run, >= 0)")
    results = []
    progress = _Progress(0, not args.quiet)
    try:
        for entry in scenarios:
            template = args.template or entry.scenario.guests[0].name if entry.scenario.guests else None
            if template is None:
                raise UsageError(f"scenario {entry.label} has no guest to copy")
            results.extend(capacity(entry, template, policies, args.seeds, args.hours, args.stall_budget,
                                    args.max_guests, settings=settings, config_file=args.config,
                                    sample_s=args.sample, jobs=args.jobs, progress=_Counting(progress)))
    finally:
        progress.close()
    table = capacity_markdown(results, args.stall_budget, args.max_guests)
    if args.markdown:
        _write(args.markdown, lambda f: f.write(table))
    if args.json:
        _write(args.json, lambda f: write_json_lines(f, (c.to_json() for c in results)))
    print(table)
    return 0


class _Counting:
    """Progress for the capacity search, whose number of runs is not known ahead."""

    def __init__(self, progress: _Progress) -> None:
        self.progress = progress

    def __call__(self, r: RunResult) -> None:
        if self.progress.done >= self.progress.total:
            self.progress.grow(1)
        self.progress(r)


def add_parser(sub: Any) -> None:
    p = sub.add_parser("bench", help="compare policies on simulated hosts (no momd needed)",
                       description=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scenario", nargs="+", action="extend", required=True, metavar="FILE",
                   help="scenario files (TOML, see doc/sim-scenarios.md); a directory: its *.toml files")
    p.add_argument("--policy", nargs="+", action="extend", metavar="NAME=PATH",
                   help="policies: NAME=PATH[+PATH...], a file or directory each; NAME= for no manager")
    p.add_argument("--baselines", action="store_true", help="also run none, default, sample, proxmox and squeezed")
    p.add_argument("--seeds", type=int, default=1, metavar="N", help="seeds per scenario and policy (default 1)")
    p.add_argument("--hours", type=float, default=1.0, metavar="H", help="simulated hours per run (default 1)")
    p.add_argument("--json", metavar="OUT", help="write one JSON line per run here")
    p.add_argument("--markdown", metavar="OUT", help="also write the tables here")
    p.add_argument("--plots", metavar="DIR", help="write PNG charts here (first seed of each run)")
    p.add_argument("--jobs", type=int, metavar="N", help="worker processes (default: one per core)")
    p.add_argument("--config", metavar="FILE", help="a mom.conf for intervals, collectors and controllers "
                                                     "(default: MOM's intervals, every collector and controller)")
    p.add_argument("--set", action="append", metavar="SECTION.KEY=VALUE", help="override a configuration value")
    p.add_argument("--sample", type=float, metavar="S",
                   help="simulated seconds between two observations of the host "
                        "(default: the shortest collection interval, 5 s)")
    p.add_argument("--capacity", action="store_true", help="find the most guests each policy holds")
    p.add_argument("--template", metavar="GUEST", help="capacity: the guest to copy (default: the first)")
    p.add_argument("--stall-budget", type=float, metavar="S", help="capacity: stall seconds one guest may have")
    p.add_argument("--max-guests", type=int, default=64, metavar="N", help="capacity: stop here (default 64)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress")
    p.set_defaults(func=cmd_bench)
