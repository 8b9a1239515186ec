"""The bench's outputs: a Markdown table per scenario, JSON lines, PNG plots.

Tables show each policy's figures averaged over its seeds (counts too, so a
0.3 means one seed in three). JSON lines hold every run as measured.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable
from typing import Any, TextIO

from mom.lab.bench import CapacityResult
from mom.lab.runner import RunResult

# (heading, figure key or keys joined by "/", digits)
COLUMNS: tuple[tuple[str, str, int], ...] = (
    ("stall s", "stall_s", 1),
    ("worst guest stall s", "stall_s_worst_guest", 1),
    ("host swap peak MiB", "host_swap_peak_mib", 0),
    ("host swap MiB*s", "host_swap_mib_s", 0),
    ("OOM host/guest", "host_oom_kills/guest_oom_kills", 1),
    ("free<10% s", "low_free_s", 0),
    ("reclaimed mean/peak MiB", "reclaimed_mean_mib/reclaimed_peak_mib", 0),
    ("KSM mean MiB", "ksm_saved_mean_mib", 0),
    ("balloon changes", "balloon_changes", 0),
    ("MiB moved", "balloon_moved_mib", 0),
    ("reversals", "balloon_reversals", 0),
    ("<min / >max s", "below_min_s/above_max_s", 0),
    ("relief s mean/max", "relief_s_mean/relief_s_max", 0),
    ("give-back s mean/max", "giveback_s_mean/giveback_s_max", 0),
)


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def _fmt(value: float, digits: int) -> str:
    if digits == 0 or float(value).is_integer():
        return f"{value:,.0f}"
    return f"{value:,.{digits}f}"


def group(results: Iterable[RunResult]) -> dict[str, dict[str, list[RunResult]]]:
    """scenario -> policy -> runs, in first-seen order."""
    out: dict[str, dict[str, list[RunResult]]] = {}
    for r in results:
        out.setdefault(r.scenario, {}).setdefault(r.policy, []).append(r)
    return out


def markdown(results: list[RunResult]) -> str:
    """One table per scenario: a row per policy, figures averaged over its seeds."""
    parts: list[str] = []
    for scenario, by_policy in group(results).items():
        first = next(iter(by_policy.values()))[0]
        seeds = sorted({r.seed for rs in by_policy.values() for r in rs})
        parts.append(f"### {scenario}\n\n{first.guests} guests, {first.hours:g} h simulated, "
                     f"seeds {', '.join(map(str, seeds))} (figures are means over the seeds)\n")
        parts.append("| policy | " + " | ".join(h for h, _, _ in COLUMNS) + " |")
        parts.append("|---|" + "---:|" * len(COLUMNS))
        for policy, runs in by_policy.items():
            cells = []
            for _, keys, digits in COLUMNS:
                cells.append("/".join(_fmt(_mean([float(r.figures[k]) for r in runs]), digits)
                                      for k in keys.split("/")))
            errors = sum(r.policy_errors for r in runs)
            name = policy + (f" ({errors} failed ticks)" if errors else "")
            parts.append(f"| {name} | " + " | ".join(cells) + " |")
        parts.append("")
    return "\n".join(parts)


def capacity_markdown(results: list[CapacityResult], stall_budget_s: float, max_guests: int) -> str:
    """A table per scenario: the most guests each policy held."""
    parts: list[str] = []
    by_scenario: dict[str, list[CapacityResult]] = {}
    for c in results:
        by_scenario.setdefault(c.scenario, []).append(c)
    for scenario, rows in by_scenario.items():
        parts.append(f"### {scenario}: capacity\n\ncopies of {rows[0].template} added to {rows[0].base_guests} "
                     f"guests until a guest stalls over {stall_budget_s:g} s or an OOM kill (at most "
                     f"{max_guests} guests)\n")
        parts.append("| policy | most guests held | counts tried (held: +, broke: -) |")
        parts.append("|---|---:|---|")
        for c in rows:
            most = f"< {c.base_guests}" if c.most_guests is None else str(c.most_guests)
            tried = " ".join(f"{n}{'+' if ok else '-'}" for n, ok in sorted(c.probes.items()))
            parts.append(f"| {c.policy} | {most} | {tried} |")
        parts.append("")
    return "\n".join(parts)


def write_json_lines(out: TextIO, rows: Iterable[dict[str, Any]]) -> None:
    for row in rows:
        out.write(json.dumps(row, sort_keys=True) + "\n")


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "x"


MAX_GUEST_PANELS = 12  # a 100-guest host gets its first 12 guests drawn


def plot_run(result: RunResult, directory: str) -> list[str]:
    """PNG plots of one run kept with its series: the host's memory stack over time,
    and per guest demand, balloon, resident memory and swap. Returns the files written."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = result.series
    if not series or not series["time"]:
        return []
    os.makedirs(directory, exist_ok=True)
    stem = os.path.join(directory, f"{_slug(result.scenario)}--{_slug(result.policy)}--seed{result.seed}")
    minutes = [t / 60 for t in series["time"]]
    host = series["host"]
    fig, ax = plt.subplots(figsize=(10, 5))
    used = [max(0.0, ram - free) for ram, free in zip(host["ram"], host["free"], strict=True)]
    other = [max(0.0, u - g - p) for u, g, p in zip(used, host["guests"], host["host_processes"], strict=True)]
    ax.stackplot(minutes, host["guests"], host["host_processes"], other, host["free"],
                 labels=["guests (resident, after KSM)", "host processes", "host cache and kernel", "free"],
                 colors=["#4c72b0", "#dd8452", "#c4c4c4", "#e8f1e8"])
    ax.plot(minutes, host["swap"], color="#c44e52", label="host swap used")
    ax.plot(minutes, host["ksm_saved"], color="#55a868", linestyle="--", label="KSM saved")
    ax.axhline(host["ram"][0] * 0.1, color="black", linewidth=0.6, linestyle=":", label="10% of RAM")
    ax.set_xlabel("simulated minutes")
    ax.set_ylabel("MiB")
    ax.set_title(f"{result.scenario} under {result.policy} (seed {result.seed}): host memory")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), fontsize=7, ncol=4, frameon=False)
    fig.tight_layout()
    files = [f"{stem}--host.png"]
    fig.savefig(files[0], dpi=90)
    plt.close(fig)
    names = list(series["guests"])[:MAX_GUEST_PANELS]
    if names:
        cols = min(3, len(names))
        rows = (len(names) + cols - 1) // cols
        fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 2.8 * rows), squeeze=False, sharex=True)
        for ax, name in zip(axes.flat, names, strict=False):  # the grid may have spare cells
            g = series["guests"][name]
            # the balloon last and dashed: a guest that fills its balloon has resident == balloon
            for key, color, style in (("demand", "#c44e52", "-"), ("resident", "#55a868", "-"),
                                      ("swap", "#8172b2", "-"), ("host_swap", "#dd8452", "-"),
                                      ("balloon", "#4c72b0", "--")):
                ax.plot(minutes, [float("nan") if v is None else v for v in g[key]], color=color, label=key,
                        linewidth=0.9, linestyle=style)
            ax.set_title(name, fontsize=9)
            ax.tick_params(labelsize=7)
        for ax in list(axes.flat)[len(names):]:
            ax.axis("off")
        axes.flat[0].legend(fontsize=6, loc="upper left")
        fig.supxlabel("simulated minutes", fontsize=8)
        fig.supylabel("MiB", fontsize=8)
        fig.suptitle(f"{result.scenario} under {result.policy} (seed {result.seed}): guests", fontsize=10)
        fig.tight_layout()
        files.append(f"{stem}--guests.png")
        fig.savefig(files[-1], dpi=80)
        plt.close(fig)
    return files
