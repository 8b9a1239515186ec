"""The built-ins added to MOM's language and short-circuit and/or, against what
was there before: the real policies decide exactly as with the original's
evaluate-every-argument and/or; a policy's own function of a new built-in's name
keeps its meaning; the static checks report the new built-ins' arity; the traced
run (momctl explain) decides as the compiled one does."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from mom.policy.compiled import json_value
from mom.policy.compiler import Compiler
from mom.policy.errors import PolicyError, Source
from mom.policy.generate import generate_snapshot
from mom.policy.policy import compile_policy
from mom.policy.snapshot import Snapshot
from mom.policy.trace import plain, trace_run
from mom.policy.validate import PolicyChecks, check_policy
from tests.support.momd import REPO, run_momctl
from tests.support.shared_policies import SHARED_POLICIES

VDSM = SHARED_POLICIES / "vdsm"
MOM_DOC = SHARED_POLICIES / "mom-doc"
BENCH = REPO / "bench" / "policies"
PARAMETERS = Source("01-parameters", "(set ksmEnabled True)\n(set balloonEnabled True)\n"
                                     "(set cpuTuneEnabled True)\n(set ioTuneEnabled True)\n")


def src(path: Path) -> Source:
    return Source(str(path), path.read_text())


def real_policy_sets() -> dict[str, list[Source]]:
    """Every file of the shared policies and bench/policies, with what it needs before it."""
    sets: dict[str, list[Source]] = {}
    if VDSM.is_dir() and MOM_DOC.is_dir():
        vdsm = sorted(VDSM.glob("*.policy"))
        sets["vdsm set"] = [src(vdsm[0]), PARAMETERS, *map(src, vdsm[1:])]
        for path in vdsm[1:]:
            sets[f"vdsm {path.name}"] = [src(vdsm[0]), src(path)]
        for path in sorted(MOM_DOC.glob("*.rules")):
            before = [src(MOM_DOC / "balloon.rules")] if path.name in ("guest-specific.rules",
                                                                       "balloon-qos.rules") else []
            sets[f"mom-doc {path.name}"] = [*before, src(path)]
        sets["bench vdsm-enable"] = [src(vdsm[0]), *map(src, sorted((BENCH / "vdsm-enable").glob("*.policy"))),
                                     *map(src, vdsm[1:])]
    for path in sorted(BENCH.glob("*.policy")):
        sets[f"bench {path.name}"] = [src(path)]
    return sets


def legacy_and_or(monkeypatch: pytest.MonkeyPatch) -> None:
    """and/or as the original MOM had them: every argument evaluated, then the
    first false (and) / true (or) value or the last."""
    def make(stop_when_true: bool):
        def form(self: Compiler, node: Any, args: tuple) -> Any:
            fs = self.operands(node, args)

            def every(V: dict, S: dict) -> Any:
                values = [f(V, S) for f in fs]
                for v in values[:-1]:
                    if bool(v) == stop_when_true:
                        return v
                return values[-1]
            return every
        return form
    monkeypatch.setattr(Compiler, "form_and", make(False))
    monkeypatch.setattr(Compiler, "form_or", make(True))


def ticks(sources: list[Source], guests: int, pressure: bool) -> list[dict[str, Any]]:
    """Four runs, each on the last one's variables, balloons moved halfway to their targets."""
    policy = compile_policy(sources)
    snap = generate_snapshot(guests, rows=6, pressure=pressure, seed=guests + 3)
    out = []
    for tick in range(4):
        d = policy.run(snap)
        out.append(json_value({"ok": d.ok, "error": d.error, "host": d.host_controls, "guests": d.guest_controls,
                               "host_vars": d.host_variables, "guest_vars": d.guest_variables}))
        carry(snap, d, tick)
    return out


def carry(snap: Snapshot, d: Any, tick: int) -> None:
    snap.host.variables = dict(d.host_variables)
    for g in snap.guests:
        name = g.properties["name"]
        g.variables = dict(d.guest_variables.get(name, {}))
        target = d.guest_controls.get(name, {}).get("balloon_target")
        if target is not None and tick % 2 == 0:
            row = dict(g.statistics[-1], balloon_cur=int((g.statistics[-1]["balloon_cur"] + target) / 2))
            g.statistics = g.statistics[1:] + [row]


SETS = real_policy_sets()


@pytest.mark.parametrize("name", sorted(SETS))
def test_real_policies_decide_as_with_the_originals_and_or(name, monkeypatch):
    sources = SETS[name]
    now = {(n, p): ticks(sources, n, p) for n in (0, 1, 7, 30) for p in (False, True)}
    legacy_and_or(monkeypatch)
    before = {(n, p): ticks(sources, n, p) for n in (0, 1, 7, 30) for p in (False, True)}
    assert now == before
    assert all(run["ok"] for runs in now.values() for run in runs)
    assert any(run["guests"] or run["host"] for runs in now.values() for run in runs)  # they decide something


def test_the_legacy_emulation_does_evaluate_every_argument(monkeypatch):
    # Guards the comparison above: the patched forms are the ones compiled.
    legacy_and_or(monkeypatch)
    assert compile_policy([Source("t", "(defvar n 0) (and 0 (set n 1)) (or 1 (set n 2)) n")]).evaluate()[-1] == 2


def later_side_effects(sources: list[Source]) -> list[str]:
    """Where a Control, SetVar, set, defvar or debug is inside a later argument of
    and/or: what only the original ran every time."""
    from mom.policy.parser import parse
    effects = {"set", "setq", "defvar", "debug"}
    found = []
    for source in sources:
        stack = list(parse(source))
        while stack:
            node = stack.pop()
            if node.kind not in ("list", "block"):
                continue
            if node.kind == "list" and node.head in ("and", "or"):
                inner = list(node.items[2:])
                while inner:
                    n = inner.pop()
                    if n.kind in ("list", "block"):
                        head = n.head if n.kind == "list" else None
                        if head in effects or (head or "").endswith((".Control", ".SetVar")):
                            found.append(f"{n.pos} {head}")
                        inner.extend(n.items)
            stack.extend(node.items)
    return found


def test_no_real_policy_has_a_side_effect_in_a_later_and_or_argument():
    # What the comparison above cannot see on generated snapshots.
    text = '(and 1 (Host.Control "x" 1))\n(or (set a 1) { (f (debug 2)) })\n(if (and 1 2) (set b 1) 0)'
    assert later_side_effects([Source("t", text)]) == ["t:2:20 debug", "t:1:8 Host.Control"]
    assert {name: later_side_effects(sources) for name, sources in SETS.items()} == {name: [] for name in SETS}


# -- a policy's own function of a new built-in's name ----------------------------------------

def test_doc_ksm_policys_own_clamp_is_the_one_called():
    text = "(def clamp (value low high) { (set calls (+ calls 1)) (max low (min high value)) })\n" \
           "(defvar calls 0)\n(defvar c (clamp 5 1 3))\ncalls"
    assert compile_policy([Source("t", text)]).evaluate()[-2:] == [3, 1]


def checked(text: str) -> list[str]:
    report = check_policy([Source("t", text)], PolicyChecks())
    return [f"{f.pos.line}:{f.pos.col} {f.severity}: {f.message}" for f in report.findings]


@pytest.mark.parametrize("text, expected", [
    ("(sum)", ["1:1 error: sum takes 1 argument, got 0"]),
    ("(defvar a 1)\n(clamp a 2)", ["2:1 error: clamp takes 3 arguments, got 2"]),
    ("(nth Guests 1 2)", ["1:1 error: nth takes 2 arguments, got 3"]),
    ("(with Guests vm (round vm.x 2))", ["1:17 error: round takes 1 argument, got 2"]),
    ("(def clamp (v) v) (clamp 1)", []),  # the policy's own clamp: its arity
    ("(def clamp (v) v) (clamp 1 2 3)", ["1:19 error: clamp takes 1 argument, got 3"]),
    ("(min-off (with Guests vm 1))", ["1:2 error: undefined function 'min-off' (did you mean 'min-of'?)"]),
    ("(sum (with Guests vm 1)) (floor 2.5) (and 1 (or 0 2))", []),
])
def test_the_static_checks_know_the_new_built_ins(text, expected):
    assert checked(text) == expected


def test_momctl_policy_check_reports_a_new_built_ins_arity(tmp_path: Path):
    bad = tmp_path / "bad.policy"
    bad.write_text("(defvar total (sum (with Guests vm vm.balloon_cur)))\n(defvar t (clamp total 1))\n")
    r = run_momctl(["policy", "check", str(bad)])
    assert (r.returncode, r.stderr) == (1, "")
    assert r.stdout.splitlines() == [f"{bad}:2:11: error: clamp takes 3 arguments, got 2",
                                     "    (defvar t (clamp total 1))",
                                     "              ^"]


# -- the traced run decides as the compiled one --------------------------------------------------

USES_THEM = """
(defvar total (sum (with Guests vm vm.balloon_cur)))
(defvar biggest (max-of (with Guests vm vm.balloon_cur)))
(defvar ranked (sort (with Guests vm vm.balloon_cur)))
(defvar smallest (nth ranked 0))
(defvar sizes (count (with Guests vm (if (> vm.balloon_cur smallest) 1 nil))))
(with Guests vm {
    (defvar target (clamp (round (* vm.balloon_cur 0.9)) vm.balloon_min vm.balloon_max))
    (if (and (== vm.balloon_cur biggest) (vm.Control "balloon_target" target)) 0 0)
    (or (!= vm.balloon_cur biggest) (> sizes 100) (vm.SetVar "ran" (ceil (/ total 7))))
    (and (< vm.balloon_cur biggest) (vm.Control "balloon_target" (floor (* 0.95 vm.balloon_cur))))
})
"""


@pytest.mark.parametrize("guests, pressure", [(1, False), (5, True), (40, False)])
def test_trace_and_run_agree(guests, pressure):
    policy = compile_policy([Source("t", USES_THEM)])
    snap = generate_snapshot(guests, rows=3, pressure=pressure, seed=guests)
    d = policy.run(snap)
    trace = trace_run(policy, snap)
    assert d.ok and trace.ok
    assert trace.guest_controls == d.guest_controls and trace.host_controls == d.host_controls
    assert len(d.guest_controls) == guests
    curs = [g.statistics[-1]["balloon_cur"] for g in snap.guests]
    assert trace.host_variables["total"] == sum(curs) and trace.host_variables["ranked"] == plain(sorted(curs))


def test_momctl_explain_shows_what_the_new_built_ins_computed(tmp_path: Path):
    policy = tmp_path / "p.policy"
    policy.write_text(USES_THEM)
    record = tmp_path / "record.jsonl"
    snap = generate_snapshot(3, rows=2, seed=5).to_json()
    record.write_text(json.dumps({**snap, "tick": 7}) + "\n")
    r = run_momctl(["explain", "vm0001", "--record", str(record), "--policy", str(policy), "--json"])
    assert r.returncode == 0, r.stderr
    x = json.loads(r.stdout)
    cur = [g["statistics"][-1]["balloon_cur"] for g in snap["guests"]]
    vm = snap["guests"][1]["statistics"][-1]
    expected = min(max(int(vm["balloon_cur"] * 0.9 + 0.5), vm["balloon_min"]), vm["balloon_max"])
    assert x["host_variables"]["total"] == sum(cur) and x["host_variables"]["biggest"] == max(cur)
    assert x["variables"]["target"] == expected and x["trace"] == "evaluated again"


def test_an_error_in_a_new_built_in_is_the_same_in_both_runs():
    policy = compile_policy([Source("t", "(defvar a 1)\n(with Guests vm (sum vm.balloon_cur))")])
    snap = generate_snapshot(2, rows=1)
    d, trace = policy.run(snap), trace_run(policy, snap)
    assert not d.ok and d.error == trace.error == "t:2:18: sum needs a list, got integer"
    with pytest.raises(PolicyError):
        policy.evaluate(*snap.entities())
