"""momctl top: a live view of a running momd.

    momctl (--socket PATH | --port N) top [--sort COLUMN] [--interval S] [--count N] [--json]

The host's memory as a bar (used, cache, free; swap and KSM's savings beside
it) with memory pressure (PSI) when collected; the guests in a table (balloon,
maximum, guarantee, used, free, swap-in and major-fault rates, last action and
when); the recent actions; the active faults. On a terminal it redraws every
--interval seconds until q (or Ctrl-C); keys: s next sort column, r reverse.
Not on a terminal it prints --count frames (default 1) as plain text. --json
prints one frame's data.
"""

from __future__ import annotations

import argparse
import json
import os
import select
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from mom.cli import rpc_cmds
from mom.daemon.status import number

EXIT_OK, EXIT_USAGE = 0, 2
SORT_COLUMNS = ("name", "balloon", "max", "guarantee", "used", "free", "swap_in", "faults", "last")
RECENT = 8  # actions shown
PAGE_KIB = 4


def mib(kib: Any) -> str:
    value = number(kib)
    return "-" if value is None else f"{value / 1024:.0f}"


@dataclass
class GuestRow:
    name: str
    balloon: float | None
    max: float | None
    guarantee: float | None
    used: float | None
    free: float | None
    swap_in: float | None  # KiB/s since the previous frame
    faults: float | None  # major faults/s since the previous frame (the daemon's clock)
    last: str  # the last action, e.g. "balloon 2048->1946"
    last_time: float | None

    def key(self, column: str) -> Any:
        value = getattr(self, column)
        if column == "last":
            return self.last_time or 0.0
        return value if value is not None else (-1.0 if column != "name" else "")


@dataclass
class Frame:
    """One view of the daemon: what the screen shows."""

    time: float
    ticks: int
    healthy: bool
    host: dict[str, Any]
    guests: list[GuestRow]
    actions: list[dict[str, Any]]
    faults: dict[str, str]

    def to_json(self) -> dict[str, Any]:
        return {"time": self.time, "ticks": self.ticks, "healthy": self.healthy, "host": self.host,
                "host_memory": host_memory(self.host),
                "guests": [g.__dict__ for g in self.guests], "actions": self.actions, "faults": self.faults}


def host_memory(host: dict[str, Any]) -> dict[str, float | None]:
    """The bar's parts in KiB: used, cache (buffers and page cache), free; swap and KSM's savings."""
    total, free, unused = (number(host.get(k)) for k in ("mem_available", "mem_free", "mem_unused"))
    sharing = number(host.get("ksm_pages_sharing"))
    return {
        "total": total,
        "used": total - free if total is not None and free is not None else None,
        "cache": free - unused if free is not None and unused is not None else None,
        "free": unused,
        "swap_used": number(host.get("swap_usage")),
        "swap_total": number(host.get("swap_total")),
        "ksm_saved": sharing * PAGE_KIB if sharing is not None else None,
    }


def _action_text(a: dict[str, Any]) -> str:
    if a.get("control") == "balloon_target":
        return f"balloon {mib(a.get('old'))}->{mib(a.get('new'))}"
    return f"{a.get('control')} {a.get('old')}->{a.get('new')}"


@dataclass
class Poller:
    """Reads frames from momd; keeps the previous counters to give rates."""

    mom: Any
    previous: dict[str, tuple[float, float | None, float | None]] = field(default_factory=dict)

    def frame(self) -> Frame:
        stats = self.mom.getStatistics()
        health = self.mom.getHealth()
        actions = self.mom.getRecentActions(200)
        now = number(health.get("time")) or time.time()  # the daemon's clock: the counters' own time
        last: dict[str, dict[str, Any]] = {}
        for a in actions:
            last[a["guest"]] = a
        rows = []
        for name, g in sorted((stats.get("guests") or {}).items()):
            balloon, unused = number(g.get("balloon_cur")), number(g.get("mem_unused"))
            swap_in, faults = self._rates(name, now, number(g.get("swap_in")), number(g.get("major_fault")))
            a = last.get(name)
            rows.append(GuestRow(name, balloon, number(g.get("balloon_max")), number(g.get("balloon_min")),
                                 balloon - unused if balloon is not None and unused is not None else None,
                                 unused, swap_in, faults, _action_text(a) if a else "",
                                 a.get("time") if a else None))
        active = {key: message for c in health["components"].values() for key, message in c["active"].items()}
        return Frame(health.get("time") or time.time(), health["ticks"], health["ok"], stats.get("host") or {},
                     rows, actions[-RECENT:], active)

    def _rates(self, name: str, now: float, swap_in: float | None,
               faults: float | None) -> tuple[float | None, float | None]:
        """Per-second rates of the guest's counters since the last frame (None at the first)."""
        before = self.previous.get(name)
        self.previous[name] = (now, swap_in, faults)
        if before is None or now <= before[0]:
            return None, None
        dt = now - before[0]

        def rate(new: float | None, old: float | None) -> float | None:
            return None if new is None or old is None else max(0.0, (new - old) / dt)
        return rate(swap_in, before[1]), rate(faults, before[2])


def sort_guests(rows: list[GuestRow], column: str, reverse: bool) -> list[GuestRow]:
    return sorted(rows, key=lambda r: (r.key(column), r.name), reverse=reverse)


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _ago(frame: Frame, t: float | None) -> str:
    if t is None:
        return ""
    seconds = max(0.0, frame.time - t)
    return f"{seconds:.0f}s ago" if seconds < 120 else f"{seconds / 60:.0f}m ago"


GUEST_HEADERS = ["guest", "balloon", "max", "guarantee", "used", "free", "swapin/s", "majflt/s", "last action"]


def guest_cells(frame: Frame, g: GuestRow) -> list[str]:
    last = f"{g.last} {_ago(frame, g.last_time)}".strip()
    return [g.name, mib(g.balloon), mib(g.max), mib(g.guarantee), mib(g.used), mib(g.free),
            _rate(g.swap_in), _rate(g.faults), last]


def _psi(host: dict[str, Any]) -> str:
    some, full = number(host.get("mem_pressure_some_avg10")), number(host.get("mem_pressure_full_avg10"))
    if some is None and full is None:
        return ""
    return f"  PSI some {some if some is not None else '-'}% full {full if full is not None else '-'}% (avg10)"


def host_line(frame: Frame) -> str:
    m = host_memory(frame.host)
    parts = [f"{k} {mib(m[k])} MiB" for k in ("total", "used", "cache", "free")]
    parts.append(f"swap {mib(m['swap_used'])}/{mib(m['swap_total'])} MiB")
    parts.append(f"KSM saved {mib(m['ksm_saved'])} MiB")
    return "host memory: " + "  ".join(parts) + _psi(frame.host)


def _head(frame: Frame, sort: str, reverse: bool) -> str:
    state = "healthy" if frame.healthy else "NOT healthy"
    return (f"momd {state}, {frame.ticks} ticks, {len(frame.guests)} guests, at {rpc_cmds._when(frame.time)}; "
            f"sorted by {sort}{' (reversed)' if reverse else ''}")


def plain(frame: Frame, sort: str, reverse: bool) -> str:
    """A frame as plain text (not a terminal)."""
    bar = "".join(char * cells for char, _, cells in bar_cells(frame, 80))
    lines = [_head(frame, sort, reverse), bar, host_line(frame), ""]
    rows = [guest_cells(frame, g) for g in sort_guests(frame.guests, sort, reverse)]
    lines.append(rpc_cmds._table(GUEST_HEADERS, rows) if rows else "(no guests)")
    lines += ["", "recent actions:"]
    lines += [f"  {rpc_cmds._when(a['time'])}  {a['guest']}  {_action_text(a)}" for a in frame.actions] or ["  (none)"]
    lines += ["", "faults:"]
    lines += [f"  {k}: {v.splitlines()[0] if v else ''}" for k, v in sorted(frame.faults.items())] or ["  (none)"]
    return "\n".join(lines)


# -- the terminal view (rich) ----------------------------------------------------------------

BAR_PARTS = (("used", "█", "red"), ("cache", "▒", "yellow"), ("free", "░", "green"))


def bar_cells(frame: Frame, width: int) -> list[tuple[str, str, int]]:
    """The host bar: (character, colour, cells) for used, cache and free, in proportion."""
    m = host_memory(frame.host)
    total = m["total"] or 0.0
    if total <= 0:
        return []
    out, taken = [], 0
    for part, char, color in BAR_PARTS:
        cells = min(round(width * max(0.0, m[part] or 0.0) / total), width - taken)
        taken += cells
        out.append((char, color, cells))
    return out


def _bar(frame: Frame, width: int) -> Any:
    from rich.text import Text
    bar = Text()
    for char, color, cells in bar_cells(frame, width):
        bar.append(char * cells, style=color)
    return bar


def render(frame: Frame, sort: str, reverse: bool, width: int) -> Any:
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text
    head = Text(_head(frame, sort, reverse), style="bold" if frame.healthy else "bold red")
    legend = Text(host_line(frame))
    guests = Table(expand=False, box=None, header_style="bold", pad_edge=False)
    for i, h in enumerate(GUEST_HEADERS):
        title = h + (" ▼" if SORT_COLUMNS[i] == sort and not reverse else " ▲" if SORT_COLUMNS[i] == sort else "")
        # Numbers are never cut short; the last action gives way on a narrow terminal.
        guests.add_column(title, justify="left" if i in (0, 8) else "right", no_wrap=True,
                          min_width=None if i == 8 else len(title), overflow="ellipsis")
    for g in sort_guests(frame.guests, sort, reverse):
        guests.add_row(*guest_cells(frame, g))
    actions = Text()
    actions.append("recent actions:\n", style="bold")
    for a in frame.actions:
        actions.append(f"  {rpc_cmds._when(a['time'])}  {a['guest']}  {_action_text(a)}\n")
    if not frame.actions:
        actions.append("  (none)\n")
    faults = Text()
    faults.append("faults: ", style="bold")
    faults.append(", ".join(f"{k}: {v.splitlines()[0] if v else ''}" for k, v in sorted(frame.faults.items()))
                  or "(none)", style="red" if frame.faults else "")
    keys = Text("q quit  s sort  r reverse", style="dim")
    return Group(head, _bar(frame, max(10, width - 2)), legend, Text(""), guests, Text(""), actions, faults, keys)


class _Keys:
    """Single key presses from a terminal (cbreak), restored on exit."""

    def __init__(self) -> None:
        import termios
        import tty
        self.fd = sys.stdin.fileno()
        self.saved = termios.tcgetattr(self.fd)
        tty.setcbreak(self.fd)

    def read(self, timeout: float) -> str | None:
        ready, _, _ = select.select([self.fd], [], [], max(0.0, timeout))
        return os.read(self.fd, 1).decode(errors="replace") if ready else None

    def close(self) -> None:
        import termios
        termios.tcsetattr(self.fd, termios.TCSADRAIN, self.saved)


def live(poller: Poller, sort: str, reverse: bool, interval: float) -> int:
    from rich.console import Console
    from rich.live import Live
    console = Console()
    keys = _Keys() if sys.stdin.isatty() else None
    try:
        frame = poller.frame()
        with Live(render(frame, sort, reverse, console.width), console=console, screen=True,
                  auto_refresh=False) as view:
            next_poll = time.monotonic() + interval
            while True:
                if keys is not None:
                    key = keys.read(next_poll - time.monotonic())
                else:  # stdin is not a terminal: no keys, Ctrl-C stops
                    time.sleep(interval)
                    key = None
                if key in ("q", "Q"):
                    return EXIT_OK
                if key == "s":
                    sort = SORT_COLUMNS[(SORT_COLUMNS.index(sort) + 1) % len(SORT_COLUMNS)]
                elif key == "r":
                    reverse = not reverse
                if time.monotonic() >= next_poll or keys is None:
                    frame = poller.frame()
                    next_poll = time.monotonic() + interval
                view.update(render(frame, sort, reverse, console.width), refresh=True)
    finally:
        if keys is not None:
            keys.close()


def cmd_top(mom: Any, args: argparse.Namespace) -> int:
    if args.interval <= 0:
        raise rpc_cmds.UsageError("--interval must be > 0")
    if args.count is not None and args.count < 1:
        raise rpc_cmds.UsageError("--count must be >= 1")
    poller = Poller(mom)
    if args.json:
        print(json.dumps(poller.frame().to_json(), indent=2, sort_keys=True))
        return EXIT_OK
    if sys.stdout.isatty() and args.count is None:
        return live(poller, args.sort, args.reverse, args.interval)
    for i in range(args.count or 1):
        if i:
            time.sleep(args.interval)
            print()
        print(plain(poller.frame(), args.sort, args.reverse), flush=True)
    return EXIT_OK


def add_parser(sub: Any) -> None:
    p = sub.add_parser("top", help="a live view of momd: host memory, guests, actions, faults",
                       description=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    rpc_cmds._connection_options(p, suppress=True)
    p.add_argument("--sort", choices=SORT_COLUMNS, default="name", help="the guest column to sort by (default name)")
    p.add_argument("--reverse", action="store_true", help="sort in reverse")
    p.add_argument("--interval", metavar="S", type=float, default=2.0, help="seconds between frames (default 2)")
    p.add_argument("--count", metavar="N", type=int, help="print N frames as plain text, then exit")
    p.add_argument("--json", action="store_true", help="print one frame's data as JSON")
    p.set_defaults(func=rpc_cmds.run, rpc=cmd_top)
