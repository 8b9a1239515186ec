"""plot-dir output, as the original: a momplot-NNN folder per start with one
tab-separated NAME.dat per entity: a header "# time" plus the sorted names of
the fields its first sample reports (optional fields it has no value for get no
column), then one line per sample (Unix time, then the values; an empty cell
where a later sample lacks a value).

The folder is made with the first sample, so a start that is refused leaves
none. When it disappears (plot-dir removed) the next sample makes a new one
once plot-dir is back. Samples are whole lines (mom.daemon.appendlines). A
failure is one fault, "output plot-dir", active until every entity that
failed has been written again (or is gone).
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
import threading
from typing import Any

from mom.core.clock import Clock
from mom.core.faults import FaultKey, FaultLog
from mom.daemon.appendlines import append_lines

log = logging.getLogger("mom.plot")

FAULT_KEY = FaultKey("output", "plot-dir")
PLOT_DIR_NAME = re.compile(r"momplot-(\d{3,})")


def _next_dir(base: str) -> str:
    """Create the next free momplot-NNN under base. Raises OSError."""
    while True:
        taken = [int(m.group(1)) for n in os.listdir(base) if (m := PLOT_DIR_NAME.fullmatch(n))]
        path = os.path.join(base, f"momplot-{max(taken, default=-1) + 1:03d}")
        try:
            os.mkdir(path)
            return path
        except FileExistsError:
            continue  # another momd took it meanwhile


def check_plot_dir(base: str) -> None:
    """Raise OSError unless folders can be made in base; leaves nothing behind."""
    os.rmdir(tempfile.mkdtemp(prefix=".momplot-check-", dir=base))


class Plotter:
    def __init__(self, plot_dir: str, faults: FaultLog | None = None) -> None:
        """Plot under plot_dir; nothing is created before the first sample.
        faults: where failures are reported (component "output")."""
        self.base = plot_dir
        self.dir: str | None = None  # this run's momplot-NNN, once made
        self.faults = faults or FaultLog(log, Clock().time)
        self._fields: dict[str, list[str]] = {}  # entity -> its columns, fixed by its first sample
        self._failing: set[str] = set()  # entities whose last sample was not written
        self._fault = ""  # the message the active fault was reported with
        self._made = 0  # momplot folders made by this run
        self._lock = threading.Lock()

    def check(self) -> None:
        """Raise OSError unless plot_dir can take a momplot folder; creates nothing."""
        check_plot_dir(self.base)

    def sample(self, entity: str, when: float, row: dict[str, Any]) -> None:
        """Append one sample; the fields of an entity's first sample fix its columns."""
        with self._lock:
            fields = self._fields.get(entity)
            if fields is None:
                # The fields the entity reports. An optional field it lacks (nil: a guest
                # kernel without huge page or allocation stall statistics, a guest without
                # a virtio-mem device) gets no column, as in the original, whose rows held
                # only what was collected; a column of nothing but empty cells helps no one.
                fields = self._fields[entity] = sorted(
                    k for k, v in row.items() if v is not None and not isinstance(v, (list, dict)))
            header = ("\t".join(["# time", *fields]) + "\n").encode()
            values = ["" if row.get(k) is None else str(row.get(k)) for k in fields]
            line = ("\t".join([f"{when:.3f}", *values]) + "\n").encode()
            try:
                self._append(entity, header, line)
            except OSError as e:
                self._failed(entity, f"{e.filename or self.base}: {e.strerror or e}")
            else:
                self._written(entity)

    def entities(self) -> list[str]:
        """The entities whose columns are kept (those seen and not forgotten)."""
        with self._lock:
            return sorted(self._fields)

    def forget(self, entity: str) -> None:
        """Drop what is kept about an entity that went away (a guest)."""
        with self._lock:
            self._fields.pop(entity, None)
            self._written(entity)

    def _append(self, entity: str, header: bytes, line: bytes) -> None:
        name = re.sub(r"[^A-Za-z0-9_.-]", "_", entity) + ".dat"
        try:
            append_lines(os.path.join(self._folder(), name), line, header=header)
        except FileNotFoundError:
            if self.dir is None or os.path.isdir(self.dir):
                raise
            self.dir = None  # removed (with plot-dir, maybe): a new one, once plot-dir is there
            append_lines(os.path.join(self._folder(), name), line, header=header)

    def _folder(self) -> str:
        """This run's momplot-NNN, made when missing. Raises OSError."""
        if self.dir is None:
            again = self._made > 0
            self.dir = _next_dir(self.base)
            self._made += 1
            if again:
                log.info("plot folder %s made anew (the previous one was removed)", self.dir)
        return self.dir

    def _failed(self, entity: str, message: str) -> None:
        """One fault while any entity fails, reported with the first failure's message."""
        if not self._failing:
            self._fault = message
        self._failing.add(entity)
        self.faults.report(FAULT_KEY, self._fault, logging.ERROR)

    def _written(self, entity: str) -> None:
        self._failing.discard(entity)
        if not self._failing:
            self.faults.clear(FAULT_KEY)
