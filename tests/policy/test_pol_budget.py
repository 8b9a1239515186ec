"""The evaluation budget: sizes of strings and lists built, bytes built per
evaluation, wall-clock time; refused at load time by the trial evaluation,
stopped at run time, with the position, quickly and in bounded memory."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import tracemalloc

import pytest

from mom.policy.compiler import Budget, Machine
from mom.policy.errors import PolicyError, PolicyRejected, Source
from mom.policy.generate import generate_snapshot
from mom.policy.policy import PolicySet, compile_policy
from tests.support.momd import REPO

from .util import compiled, ev1, registry_checks, where

MiB = 1 << 20

# The shapes that were accepted and ran away: 500 guests each building a 1 MB
# string (548 MB per evaluation), a nested variant (3.45 GB), and 250,000 steps
# each building a 1 MB string (4.3 s per evaluation).
MEMORY_HUNGRY = {
    "string per guest": '(with Guests g (+ (* "x" 1048575) "y"))',
    "nested": '(with Guests g (with Guests h (+ (* "x" 524288) (g.Prop "name"))))',
    "string per step": '(defvar many (* Guests 500))\n(with many g (* "x" 1048576))',
}

BUDGET_EXCEEDED = "policy budget exceeded: "


@pytest.fixture(scope="module")
def guests_500():
    return generate_snapshot(500, rows=2)


@pytest.mark.parametrize("shape", MEMORY_HUNGRY)
def test_memory_hungry_policies_are_refused_by_the_trial(shape, guests_500):
    ps = PolicySet(checks=registry_checks(trial_snapshot=lambda: guests_500))
    with pytest.raises(PolicyRejected) as info:
        ps.set("hungry", MEMORY_HUNGRY[shape])
    e = info.value
    assert e.message.startswith(BUDGET_EXCEEDED) and e.pos is not None, e.render()
    assert e.note == "found by a trial evaluation" and ps.names() == []


@pytest.mark.parametrize("shape", MEMORY_HUNGRY)
def test_memory_hungry_policies_stop_within_budget(shape, guests_500):
    policy = compile_policy([Source("hungry.policy", MEMORY_HUNGRY[shape])])
    tracemalloc.start()
    try:
        start = time.monotonic()
        d = policy.run(guests_500)
        elapsed = time.monotonic() - start
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert not d.ok and BUDGET_EXCEEDED in d.error and d.error.startswith("hungry.policy:")
    assert peak < Budget().max_alloc + 16 * MiB, f"peak {peak / MiB:.0f} MiB"
    assert elapsed < Budget().max_seconds, "the byte budget stops it, not the clock"


def test_memory_stays_bounded_in_a_fresh_process():
    # Before the budget the nested shape alone grew the process to 3.45 GB.
    code = f"""
import json, resource
from mom.policy.errors import Source
from mom.policy.generate import generate_snapshot
from mom.policy.policy import compile_policy
snap = generate_snapshot(500, rows=2)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
errors = [compile_policy([Source("p", text)]).run(snap).error for text in {list(MEMORY_HUNGRY.values())!r}]
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({{"grew_kib": after - before, "errors": errors}}))
"""
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert all(BUDGET_EXCEEDED in e for e in out["errors"]), out["errors"]
    assert out["grew_kib"] < 2 * Budget().max_alloc // 1024, out


def test_the_deadline_stops_a_long_evaluation():
    text = "(def f (n) (if (< n 1) 0 (+ (f (- n 1)) (f (- n 1)))))\n(f 40)"  # 2**41 calls
    start = time.monotonic()
    with pytest.raises(PolicyError) as raised:
        compiled(text, max_steps=10**12, max_seconds=0.05).evaluate()
    e = raised.value
    assert time.monotonic() - start < 5
    assert e.message == "policy budget exceeded: evaluation took longer than 0.05 s"
    assert where(e)[:2] == ("t.policy", 1) and e.calls  # where it was, inside f


def test_the_deadline_is_per_evaluation():
    p = compiled("(def f (n) (if (< n 1) 0 (+ 1 (f (- n 1))))) (f 50)", max_seconds=0.5)
    for _ in range(3):
        time.sleep(0.2)  # time between evaluations does not count
        assert p.evaluate()[-1] == 50


def test_one_string_or_list_is_bounded_by_max_size():
    assert len(ev1('(* "ab" 500)', max_size=1000)) == 1000
    for text, what in [('(* "ab" 501)', "string of 1,002 characters"),
                       ('(+ (* "a" 600) (* "b" 401))', "string of 1,001 characters"),
                       ("(* (with Guests g 1) 1001)", "list of 1,001 items")]:
        with pytest.raises(PolicyError) as raised:
            compiled(text, max_size=1000).evaluate(None, [None])
        e = raised.value
        assert e.message == f"{BUDGET_EXCEEDED}{what}, longer than the limit of 1,000", text


def test_bytes_built_are_summed_over_the_evaluation():
    text = '(defvar s (* "x" 100000)) (with (* Guests 30) g (+ s "!"))'
    assert len(compiled(text, max_alloc=4 * MiB).evaluate(None, [None])[-1]) == 30
    with pytest.raises(PolicyError) as raised:
        compiled(text, max_alloc=2 * MiB).evaluate(None, [None])
    e = raised.value
    assert e.message == f"{BUDGET_EXCEEDED}more than 2 MiB of strings, lists and entries built in one evaluation"
    assert where(e) == ("t.policy", 1, 50)


@pytest.mark.parametrize("text", [
    "(defvar many (* Guests 20000)) (with many g (abs (- 0 (<< 1 4000))))",  # large integers kept in a list
    "(defvar n 0) (with (* Guests 20000) g {(set n (+ n 1)) (Host.SetVar n 1.5)})",  # entries without end
    "(with (* Guests 40000) g (Host.Control (+ \"c\" (g.Prop \"name\")) 1))",
])
def test_other_things_a_policy_keeps_are_charged(text):
    with pytest.raises(PolicyError) as raised:
        compiled(text, max_alloc=2 * MiB).evaluate(None, generate_snapshot(5).entities()[1])
    e = raised.value
    assert e.message.startswith(BUDGET_EXCEEDED), e.message


def test_budget_errors_carry_the_call_chain():
    text = '(def grow (s) (grow (+ s s)))\n(def start () (grow "ab"))\n(start)'
    with pytest.raises(PolicyError) as raised:
        compiled(text, max_size=1000).evaluate()
    e = raised.value
    assert e.message.startswith(BUDGET_EXCEEDED + "string of 1,024")
    assert [(name, p.line) for name, p in e.calls][-2:] == [("grow", 2), ("start", 3)]


def test_a_policy_set_passes_its_budget_on_and_can_change_it():
    ps = PolicySet(budget=Budget(max_size=100))
    ps.set("p", '(defvar s (* "ab" (Host.GetVar "n")))')
    snap = generate_snapshot(1)
    snap.host.variables["n"] = 60
    assert BUDGET_EXCEEDED in ps.run(snap).error
    ps.configure(budget=Budget(max_size=1000))  # applies to the policy in force
    assert ps.run(snap).ok and ps.budget.max_size == 1000
    assert PolicySet(max_steps=7).budget == Budget(max_steps=7)


def test_the_trial_uses_the_budget_of_the_set():
    ps = PolicySet(budget=Budget(max_steps=10), checks=registry_checks())
    with pytest.raises(PolicyRejected) as info:
        ps.set("p", "(with Guests g (with Guests h 1))")  # 8 + 64 steps on the trial snapshot
    assert info.value.message == (f"{BUDGET_EXCEEDED}more than 10 steps (function calls and with iterations)")


def test_the_defaults_leave_real_policies_far_below(guests_500):
    text = '(with Guests g { (g.SetVar "note" (+ "guest " (g.Prop "name"))) (g.Control "balloon_target" 1) })'
    p = compiled(text)
    machine = Machine(p.budget)
    d = p.run(guests_500, machine)
    assert d.ok
    assert machine.alloc < Budget().max_alloc / 100 and machine.steps == 500
