"""One compiled policy evaluated by several threads at once: each evaluation has
its own state (function table, steps, depth, bytes), so none waits for another
and none sees another's counts."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from mom.policy.compiler import Budget, Machine
from mom.policy.runtime import debug_log

from .util import compiled, snapshot

# Recursion as deep as the guest's n; at the bottom of a guest marked wait, the
# (debug) line lets the test hold that evaluation where it is, 30 calls deep.
POLICY = """
(def depth (n wait) (if (<= n 0) { (if wait (debug "bottom") 0) 0 } (+ 1 (depth (- n 1) wait))))
(with Guests g (g.Control "balloon_target" (depth g.n g.wait)))
"""


class _HoldAtBottom(logging.Handler):
    """Blocks the thread that logs "bottom" until released."""

    def __init__(self) -> None:
        super().__init__()
        self.reached = threading.Event()
        self.go_on = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if "bottom" in record.getMessage():
            self.reached.set()
            self.go_on.wait(30)


@pytest.fixture
def hold() -> Iterator[_HoldAtBottom]:
    handler = _HoldAtBottom()
    level = debug_log.level
    debug_log.addHandler(handler)
    debug_log.setLevel(logging.DEBUG)
    yield handler
    handler.go_on.set()
    debug_log.removeHandler(handler)
    debug_log.setLevel(level)


def test_a_run_held_mid_call_does_not_hold_up_or_disturb_another(hold):
    policy = compiled(POLICY, max_depth=40)  # each run is 30 deep: two sharing one count would pass 40
    held = snapshot(guests={"held": [{"n": 30, "wait": 1}]})
    other = snapshot(guests={f"vm{i}": [{"n": 30, "wait": 0}] for i in range(5)})
    results: dict[str, Any] = {}
    machines = {"held": Machine(policy.budget), "other": Machine(policy.budget)}

    def run(name: str, snap: Any) -> None:
        results[name] = policy.run(snap, machines[name])

    first = threading.Thread(target=run, args=("held", held))
    first.start()
    assert hold.reached.wait(30), "the first run never reached the bottom of its recursion"
    second = threading.Thread(target=run, args=("other", other))
    second.start()
    second.join(30)
    assert not second.is_alive(), "the second run waited for the first"
    assert "held" not in results  # still 30 calls deep
    hold.go_on.set()
    first.join(30)
    assert results["other"].ok and results["held"].ok, (results["other"].error, results["held"].error)
    assert results["other"].guest_controls == {f"vm{i}": {"balloon_target": 30} for i in range(5)}
    assert results["held"].guest_controls == {"held": {"balloon_target": 30}}
    assert machines["held"].steps == 32 and machines["held"].depth == 0  # 1 with iteration + 31 calls
    assert machines["other"].steps == 5 * 32


def test_many_threads_get_the_same_decisions_as_one():
    policy = compiled(POLICY, max_depth=40)
    snaps = [snapshot(guests={f"vm{i}": [{"n": (i * 7 + t) % 30, "wait": 0}] for i in range(20)})
             for t in range(8)]
    expected = [policy.run(s).guest_controls for s in snaps]
    got: list[Any] = [None] * len(snaps)

    def run(i: int) -> None:
        for _ in range(20):
            d = policy.run(snaps[i])
            assert d.ok, d.error
            got[i] = d.guest_controls

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(snaps))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert got == expected


def test_changing_the_budget_applies_to_the_next_run_without_recompiling():
    policy = compiled(POLICY)
    snap = snapshot(guests={"vm": [{"n": 30, "wait": 0}]})
    assert policy.run(snap).ok
    policy.set_budget(Budget(max_depth=10))
    d = policy.run(snap)
    assert not d.ok and "calls nested deeper than 10" in (d.error or "")
