"""plot-dir output, as the original: a momplot-NNN folder per start with one
tab-separated NAME.dat per entity: a header "# time" plus the sorted field
names, then one line per sample (Unix time, then the values)."""

from __future__ import annotations

import logging
import os
import re
from typing import Any

log = logging.getLogger("mom.plot")


def _next_dir(base: str) -> str:
    taken = [int(m.group(1)) for n in os.listdir(base) if (m := re.fullmatch(r"momplot-(\d{3,})", n))]
    path = os.path.join(base, f"momplot-{max(taken, default=-1) + 1:03d}")
    os.makedirs(path)
    return path


class Plotter:
    def __init__(self, plot_dir: str) -> None:
        """Create the next momplot-NNN under plot_dir. Raises OSError."""
        self.dir = _next_dir(plot_dir)
        self._fields: dict[str, list[str]] = {}
        self._failed = False

    def sample(self, entity: str, when: float, row: dict[str, Any]) -> None:
        """Append one sample; the fields of an entity's first sample fix its columns.

        The file is opened per sample (one open per guest per collection, cheap
        next to the collection itself): no handles pile up as guests come and go.
        """
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", entity)
        path = os.path.join(self.dir, f"{safe}.dat")
        try:
            with open(path, "a", encoding="utf-8") as f:
                fields = self._fields.get(entity)
                if fields is None:
                    fields = self._fields[entity] = sorted(k for k, v in row.items() if not isinstance(v, (list, dict)))
                    f.write("\t".join(["# time", *fields]) + "\n")
                values = ["" if row.get(k) is None else str(row.get(k)) for k in fields]
                f.write("\t".join([f"{when:.3f}", *values]) + "\n")
        except OSError as e:
            if not self._failed:
                log.error("plot %s: %s", path, e.strerror or e)
            self._failed = True
