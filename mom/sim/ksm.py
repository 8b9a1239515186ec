"""Simulated KSM: how pages_shared and pages_sharing follow the guests and the tunables.

What can merge: guests of one image hold identical copies of the same pages
(``shareable`` of their resident memory). With copies of sizes s1 >= s2 >= ...
(pages), a page merges when two or more guests hold it, so a full merge gives
pages_shared = s2 (one kept KSM page per content held twice or more) and
pages_sharing = sum(s) - s1 (the extra mappings: N identical copies save N-1).

How fast: with run=1 ksmd scans pages_to_scan pages every sleep_millisecs;
the merged share of what can merge approaches 1 exponentially, one full scan of
all guest memory being one time constant. run=0 stops scanning and merged pages
slowly break apart as guests write to them (COW); run=2 unmerges everything at
once, as the kernel does synchronously. Changing merge_across_nodes needs all
pages unmerged in a real kernel; here it unmerges.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

# Time constant (s) of COW breaking of merged pages while ksmd is stopped.
COW_DECAY_S = 600.0
# ksmd's cost: pages scanned per second at 100% of one CPU.
PAGES_PER_CPU_SECOND = 250_000.0
CLK_TCK = 100


@dataclass
class KsmState:
    run: int = 0
    pages_to_scan: int = 100
    sleep_millisecs: int = 20
    merge_across_nodes: int = 1
    sharing: float = 0.0         # pages_sharing now: the pages saved
    can_share: float = 0.0       # pages_shared after a full merge
    can_save: float = 0.0        # pages_sharing after a full merge
    scanned: float = 0.0
    full_scans: float = 0.0
    cpu_ticks: float = 0.0
    _unshared: float = 0.0

    def apply_controls(self, controls: dict[str, int]) -> None:
        """Take the tunables read from sysfs; values the kernel would reject are ignored."""
        mxn = controls.get("merge_across_nodes", self.merge_across_nodes)
        if mxn in (0, 1) and mxn != self.merge_across_nodes:
            self.merge_across_nodes = mxn
            self.unmerge()
        if controls.get("run", self.run) in (0, 1, 2):
            self.run = controls.get("run", self.run)
        if controls.get("pages_to_scan", 0) >= 0:
            self.pages_to_scan = controls.get("pages_to_scan", self.pages_to_scan)
        if controls.get("sleep_millisecs", 0) >= 0:
            self.sleep_millisecs = controls.get("sleep_millisecs", self.sleep_millisecs)

    def unmerge(self) -> None:
        self.sharing = 0.0
        self.scanned = 0.0
        self._unshared = 0.0

    def scan_rate(self) -> float:
        """Pages scanned per second with the current tunables (0 unless run=1)."""
        if self.run != 1:
            return 0.0
        return self.pages_to_scan * 1000.0 / max(self.sleep_millisecs, 1)

    def step(self, dt: float, total_pages: float, groups: list[list[float]]) -> None:
        """Advance dt seconds over guests of total_pages resident pages; groups
        holds, per image, each guest's identical pages."""
        self.can_share = self.can_save = 0.0
        for copies in groups:
            if len(copies) > 1:
                ordered = sorted(copies, reverse=True)
                self.can_share += ordered[1]
                self.can_save += sum(ordered) - ordered[0]
        if self.run == 2:
            self.unmerge()
            return
        rate = self.scan_rate()
        if rate > 0 and total_pages > 0:
            scanned = rate * dt
            missing = max(0.0, self.can_save - self.sharing)
            self.sharing += missing * (1.0 - math.exp(-scanned / total_pages))
            self.scanned = min(total_pages, self.scanned + scanned)
            self.full_scans += scanned / total_pages
            self.cpu_ticks += min(1.0, rate / PAGES_PER_CPU_SECOND) * dt * CLK_TCK
            self._unshared = max(0.0, self.scanned - self.can_save - self.can_share)
        elif rate == 0:
            self.sharing *= math.exp(-dt / COW_DECAY_S)
        # Memory the guests released or that stopped being identical is unmerged.
        self.sharing = min(self.sharing, self.can_save)

    def stats(self) -> dict[str, int]:
        """The counters as sysfs shows them."""
        sharing = int(self.sharing)
        shared = int(self.sharing * (self.can_share / self.can_save)) if sharing else 0
        unshared = int(self._unshared)
        return {
            "pages_shared": shared,
            "pages_sharing": sharing,
            "pages_unshared": unshared,
            "pages_volatile": unshared // 20,
            "full_scans": int(self.full_scans),
        }

    @property
    def saved_kib(self) -> float:
        """Host memory KSM saves: pages_sharing counts the sites beyond each shared copy."""
        return self.sharing * 4
