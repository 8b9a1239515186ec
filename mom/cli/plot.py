"""momctl plot RECORD...|PLOT_DIR -o DIR: PNG charts of what momd saw and did.

    host.png          the host's memory over time, stacked (used, cache, free),
                      swap used and KSM's savings as lines; the ticks with actions
                      marked above it (balloons taken, balloons given, host controls)
    guest-NAME.png    per guest: its balloon, the memory it uses, its free memory,
                      its swap, its balloon maximum; its own actions marked

RECORD is a flight recorder file (record-file; actions are marked; give its
rotated files too, e.g. record.jsonl.1 record.jsonl, for a longer span); PLOT_DIR is
plot-dir or one of its momplot-NNN folders (the newest is drawn; it holds no
actions). Memory is drawn in MiB (GiB past 16 GiB). Sized for a day of 10 s
ticks and 50 guests: one chart per guest, every sample drawn.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import re
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from mom.core.errors import MomError

EXIT_OK, EXIT_ERROR = 0, 1
PAGE_KIB = 4  # KSM counts pages

# The charts' colours (the tests find the curves by them).
USED, CACHE, FREE = "#d62728", "#ff9f40", "#2ca02c"
SWAP, KSM = "#9467bd", "#17becf"
BALLOON, GUEST_USED, GUEST_FREE, GUEST_SWAP, BALLOON_MAX = "#1f4fd6", "#ff7f0e", "#2ca02c", "#9467bd", "#7f7f7f"
TAKEN, GIVEN, HOST_ACTION = "#c00000", "#008000", "#000000"
HOST_SIZE = (16, 6)  # inches, at DPI
GUEST_SIZE = (12, 4.5)
DPI = 100


class PlotError(MomError):
    """The input cannot be drawn (one line: why)."""


@dataclass
class Series:
    """An entity's samples: times (Unix seconds) and one row of fields each."""

    times: list[float] = field(default_factory=list)
    rows: list[dict[str, Any]] = field(default_factory=list)

    def add(self, when: float, row: dict[str, Any]) -> None:
        self.times.append(when)
        self.rows.append(row)

    def column(self, name: str) -> list[float]:
        """The field's values, NaN where a sample lacks it."""
        return [_num(r.get(name)) for r in self.rows]


@dataclass
class PlotData:
    host: Series
    guests: dict[str, Series]
    actions: list[dict[str, Any]]  # as the recorder writes them
    has_actions: bool


def _num(value: Any) -> float:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
    return float("nan")


# -- reading -------------------------------------------------------------------------------

def _newest(entity: Any) -> dict[str, Any] | None:
    rows = entity.get("statistics") if isinstance(entity, dict) else None
    return rows[-1] if isinstance(rows, list) and rows and isinstance(rows[-1], dict) else None


def read_record(path: str) -> PlotData:
    """A flight recorder file: each tick's newest rows and its actions. Raises PlotError."""
    data = PlotData(Series(), {}, [], True)
    try:
        f = open(path, encoding="utf-8", errors="replace")
    except OSError as e:
        raise PlotError(f"cannot read {path}: {e.strerror}") from None
    with f:
        for n, line in enumerate(f, 1):
            if not line.endswith("\n"):
                break  # being written, or cut by a crash
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                raise PlotError(f"{path}:{n}: not a record line: {e.msg}") from None
            when = rec.get("time") if isinstance(rec, dict) else None
            if not isinstance(when, (int, float)):
                raise PlotError(f"{path}:{n}: not a record line: no time")
            host = _newest(rec.get("host"))
            if host is not None:
                data.host.add(when, host)
            for g in rec.get("guests") or []:
                row = _newest(g)
                name = g.get("properties", {}).get("name") if isinstance(g, dict) else None
                if row is not None and name is not None:
                    data.guests.setdefault(str(name), Series()).add(when, row)
            data.actions.extend(a for a in rec.get("actions") or [] if isinstance(a, dict))
    if not data.host.times:
        raise PlotError(f"{path}: no ticks recorded")
    return data


def _plot_folder(path: str) -> str:
    """PATH itself when it holds .dat files, else its newest momplot-NNN."""
    names = os.listdir(path)
    if any(n.endswith(".dat") for n in names):
        return path
    runs = sorted((int(m.group(1)), n) for n in names if (m := re.fullmatch(r"momplot-(\d+)", n)))
    if not runs:
        raise PlotError(f"{path}: neither a plot-dir (momplot-NNN folders) nor a momplot folder (.dat files)")
    return os.path.join(path, runs[-1][1])


def read_dat(path: str) -> Series:
    series = Series()
    with open(path, encoding="utf-8", errors="replace") as f:
        header = f.readline()
        if not header.startswith("# time"):
            raise PlotError(f"{path}: not a plot file (no '# time' header)")
        fields = header[1:].split()[1:]
        for line in f:
            if not line.endswith("\n"):
                break
            values = line.rstrip("\n").split("\t")
            when = _num(values[0])
            if when != when:  # NaN: not a sample line
                continue
            series.add(when, dict(zip(fields, values[1:], strict=False)))  # a short line: what it has
    return series


def read_plot_dir(path: str) -> PlotData:
    """plot-dir or a momplot folder: host.dat and one NAME.dat per guest. Raises PlotError."""
    try:
        folder = _plot_folder(path)
        files = sorted(n for n in os.listdir(folder) if n.endswith(".dat"))
        series = {n[:-4]: read_dat(os.path.join(folder, n)) for n in files}
    except OSError as e:
        raise PlotError(f"cannot read {e.filename or path}: {e.strerror}") from None
    host = series.pop("host", None)
    if host is None or not host.times:
        raise PlotError(f"{folder}: no host.dat samples")
    return PlotData(host, series, [], False)


def read_input(paths: list[str]) -> PlotData:
    """One plot-dir, or record files joined in time order. Raises PlotError."""
    if any(os.path.isdir(p) for p in paths):
        if len(paths) > 1:
            raise PlotError("give one PLOT_DIR, or record files")
        return read_plot_dir(paths[0])
    parts = [read_record(p) for p in paths]
    if len(parts) == 1:
        return parts[0]
    merged = PlotData(Series(), {}, [], True)
    for part in sorted(parts, key=lambda d: d.host.times[0]):
        for when, row in zip(part.host.times, part.host.rows, strict=True):
            merged.host.add(when, row)
        for name, series in part.guests.items():
            target = merged.guests.setdefault(name, Series())
            for when, row in zip(series.times, series.rows, strict=True):
                target.add(when, row)
        merged.actions.extend(part.actions)
    return merged


# -- drawing -------------------------------------------------------------------------------

def _unit(max_kib: float) -> tuple[str, float]:
    return ("GiB", 1024 * 1024) if max_kib > 16 * 1024 * 1024 else ("MiB", 1024)


def _dates(times: Iterable[float]) -> list[Any]:
    import datetime
    return [datetime.datetime.fromtimestamp(t) for t in times]


def _figure(size: tuple[float, float]) -> tuple[Any, Any]:
    import matplotlib
    matplotlib.use("Agg")  # files only: no display needed
    import matplotlib.dates as mdates
    from matplotlib.figure import Figure
    fig = Figure(figsize=size, dpi=DPI)
    ax = fig.add_subplot(1, 1, 1)
    locator = mdates.AutoDateLocator()
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
    ax.grid(True, alpha=0.3)
    return fig, ax


def _mark_actions(ax: Any, actions: list[dict[str, Any]], top: float) -> None:
    """One marker per tick and kind above the curves: balloons taken, given, host controls."""
    kinds: dict[str, set[float]] = {"taken": set(), "given": set(), "host": set()}
    for a in actions:
        if not a.get("applied", True) or not isinstance(a.get("time"), (int, float)):
            continue
        if a.get("target") == "host":
            kinds["host"].add(a["time"])
        elif a.get("control") == "balloon_target":
            kinds["taken" if _num(a.get("new")) < _num(a.get("old")) else "given"].add(a["time"])
    styles = {"taken": (TAKEN, "v", 1.06, "balloon taken"), "given": (GIVEN, "^", 1.03, "balloon given"),
              "host": (HOST_ACTION, "|", 1.09, "host control")}
    for kind, times in kinds.items():
        if times:
            color, marker, height, label = styles[kind]
            ts = sorted(times)
            ax.scatter(_dates(ts), [top * height] * len(ts), color=color, marker=marker, s=16, label=label,
                       clip_on=False, zorder=3)


def draw_host(data: PlotData, path: str) -> None:
    host = data.host
    total = host.column("mem_available")
    free = host.column("mem_free")  # free + buffers + cache, as MOM counts it
    unused = host.column("mem_unused")  # MemFree
    top = max((t for t in total if t == t), default=1.0)
    unit, div = _unit(top)
    used = [(t - f) / div for t, f in zip(total, free, strict=True)]
    cache = [(f - u) / div for f, u in zip(free, unused, strict=True)]
    spare = [u / div for u in unused]
    fig, ax = _figure(HOST_SIZE)
    x = _dates(host.times)
    ax.stackplot(x, used, cache, spare, colors=[USED, CACHE, FREE], labels=["used", "cache and buffers", "free"],
                 linewidth=0)
    swap = host.column("swap_usage")
    if any(s == s for s in swap):
        ax.plot(x, [s / div for s in swap], color=SWAP, linewidth=1.5, label="swap used")
    sharing = host.column("ksm_pages_sharing")
    if any(s == s and s > 0 for s in sharing):
        ax.plot(x, [s * PAGE_KIB / div for s in sharing], color=KSM, linewidth=1.5, label="saved by KSM")
    ax.set_ylim(0, top / div * 1.12)
    _mark_actions(ax, data.actions, top / div)
    ax.set_ylabel(unit)
    title = "host memory" + ("" if data.has_actions else " (plot-dir: no actions recorded)")
    ax.set_title(f"{title}, {len(data.guests)} guests")
    ax.legend(loc="upper left", bbox_to_anchor=(1.005, 1.0), fontsize="small")  # beside: hides no data
    fig.tight_layout()
    fig.savefig(path)


def draw_guest(name: str, series: Series, actions: list[dict[str, Any]], path: str) -> None:
    balloon = series.column("balloon_cur")
    unused = series.column("mem_unused")
    maximum = series.column("balloon_max")
    top = max((v for v in balloon + maximum if v == v), default=1.0)
    unit, div = _unit(top)
    fig, ax = _figure(GUEST_SIZE)
    x = _dates(series.times)
    ax.plot(x, [v / div for v in maximum], color=BALLOON_MAX, linestyle="--", linewidth=1, label="balloon max")
    used = [(b - u) / div for b, u in zip(balloon, unused, strict=True)]
    ax.plot(x, used, color=GUEST_USED, linewidth=1.5, label="used")
    ax.plot(x, [u / div for u in unused], color=GUEST_FREE, linewidth=1.5, label="free")
    swap = series.column("swap_usage")
    if any(s == s for s in swap):
        ax.plot(x, [s / div for s in swap], color=GUEST_SWAP, linewidth=1.5, label="swap used")
    ax.plot(x, [v / div for v in balloon], color=BALLOON, linewidth=2.5, label="balloon")
    ax.set_ylim(0, top / div * 1.12)
    _mark_actions(ax, [a for a in actions if a.get("target") == name], top / div)
    ax.set_ylabel(unit)
    ax.set_title(f"guest {name}")
    ax.legend(loc="upper left", bbox_to_anchor=(1.005, 1.0), fontsize="small")  # beside: hides no data
    fig.tight_layout()
    fig.savefig(path)


def file_name(guest: str) -> str:
    return "guest-" + re.sub(r"[^A-Za-z0-9_.-]", "_", guest) + ".png"


def plot(sources: str | list[str], out_dir: str) -> list[str]:
    """Write the charts of the sources (a plot-dir, or record files) into out_dir;
    their paths. Raises PlotError."""
    data = read_input([sources] if isinstance(sources, str) else list(sources))
    try:
        os.makedirs(out_dir, exist_ok=True)
    except OSError as e:
        raise PlotError(f"cannot make {out_dir}: {e.strerror}") from None
    written = []
    jobs: list[tuple[str, Callable[[str], None]]] = [("host.png", functools.partial(draw_host, data))]
    jobs += [(file_name(name), functools.partial(draw_guest, name, series, data.actions))
             for name, series in sorted(data.guests.items())]
    for name, draw in jobs:
        path = os.path.join(out_dir, name)
        try:
            draw(path)
        except OSError as e:
            raise PlotError(f"cannot write {path}: {e.strerror}") from None
        written.append(path)
    return written


def cmd_plot(args: argparse.Namespace) -> int:
    try:
        written = plot(args.source, args.output)
    except PlotError as e:
        print(f"momctl: {e}", file=sys.stderr)
        return EXIT_ERROR
    if args.json:
        print(json.dumps(written, indent=2))
    else:
        for path in written:
            print(path)
    return EXIT_OK


def add_parser(sub: Any) -> None:
    p = sub.add_parser("plot", help="PNG charts of a flight recorder file or a plot-dir",
                       description=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("source", metavar="RECORD|PLOT_DIR", nargs="+",
                   help="a flight recorder file (or several: its rotated files), or a plot-dir")
    p.add_argument("-o", "--output", metavar="DIR", required=True, help="where the PNG files go (made if missing)")
    p.add_argument("--json", action="store_true", help="print the files written as JSON")
    p.set_defaults(func=cmd_plot)
