"""Compiled policies across runs, named policies (PolicySet), and reading policy files."""

from __future__ import annotations

import threading

import pytest

from mom.policy.errors import PolicyError, Source
from mom.policy.policy import DEFAULT_POLICY_NAME, PolicySet, compile_policy, read_policy_paths

from .util import compiled, host, snapshot

# -- one evaluation, one fresh environment ------------------------------------------------------

def test_variables_do_not_leak_between_runs():
    p = compiled('(defvar runs 0) (set runs (+ runs 1)) (Host.Control "runs" runs)')
    snap = snapshot()
    assert [p.run(snap).host_controls for _ in range(3)] == [{"runs": 1}] * 3


def test_defvar_from_run_one_is_not_seen_by_run_two():
    p = compiled('(if (== (Host.GetVar "n") 1) x 0) (defvar x 1) (Host.SetVar "n" 1)')
    h = host()
    assert p.evaluate(h)[0] == 0
    with pytest.raises(PolicyError) as info:
        p.evaluate(h)  # same host entity: its SetVar memory persists, the variable must not
    assert "undefined variable 'x'" in info.value.message


def test_defs_from_run_one_are_not_seen_by_run_two():
    p = compiled('(if (== (Host.GetVar "n") 1) (f) 0) (def f () 1) (Host.SetVar "n" 1)')
    h = host()
    assert p.evaluate(h)[0] == 0
    with pytest.raises(PolicyError) as info:
        p.evaluate(h)
    assert "undefined function 'f'" in info.value.message


def test_a_failed_run_does_not_poison_the_next():
    p = compiled('(defvar d (Host.GetVar "d")) (Host.SetVar "d" 0) (def f () 5) (/ (f) d)')
    h = host(variables={"d": 0})
    with pytest.raises(PolicyError):
        p.evaluate(h)
    assert p.evaluate(host(variables={"d": 5}))[-1] == 1.0


def test_compile_policy_concatenates_sources_in_order():
    p = compile_policy([Source("a", "(defvar v 1)"), Source("b", "(defvar v 2) (set v (+ v 10)) v")])
    assert p.evaluate() == [1, 1, 11, 11]
    assert compile_policy([]).evaluate() == []


# -- PolicySet -----------------------------------------------------------------------------------

def order_policy():
    ps = PolicySet()
    ps.set("b", '(defvar v 2) (Host.Control "order" v)')
    ps.set("a", "(defvar v 1)")
    return ps


def test_texts_are_concatenated_in_name_order():
    ps = order_policy()
    assert ps.names() == ["a", "b"]
    assert ps.text() == '(defvar v 1)\n(defvar v 2) (Host.Control "order" v)'
    assert ps.run(snapshot()).host_controls == {"order": 1}  # a's defvar first; b's does not overwrite


def test_text_is_0_when_empty():
    ps = PolicySet()
    assert ps.text() == "0" and ps.names() == []
    d = ps.run(snapshot())
    assert d.ok and d.host_controls == {} and d.guest_controls == {}
    ps.set("a", "1")
    ps.set("a", None)
    assert ps.text() == "0"


def test_replacing_one_policy():
    ps = order_policy()
    ps.set("a", "(defvar v 3)")
    assert ps.text() == '(defvar v 3)\n(defvar v 2) (Host.Control "order" v)'
    assert ps.run(snapshot()).host_controls == {"order": 3}


def test_deleting_one_policy():
    ps = order_policy()
    ps.set("a", None)
    assert ps.names() == ["b"] and ps.run(snapshot()).host_controls == {"order": 2}
    ps.set("nonexistent", None)
    assert ps.names() == ["b"]


@pytest.mark.parametrize("bad", ["(defvar v", "(+ 1 2) @", "(if 1 2)", "(defvar _v 1)", '"open'])
def test_a_text_that_does_not_load_is_rejected_and_the_old_stays(bad):
    ps = order_policy()
    before = ps.text()
    with pytest.raises(PolicyError) as info:
        ps.set("a", bad)
    assert str(info.value).startswith("a:1:")  # named by the policy's name
    assert ps.text() == before and ps.names() == ["a", "b"]
    assert ps.run(snapshot()).host_controls == {"order": 1}
    with pytest.raises(PolicyError):
        ps.set("c", bad)  # adding a bad one is rejected too
    assert ps.names() == ["a", "b"] and ps.text() == before
    assert ps.run(snapshot()).host_controls == {"order": 1}


def test_replace_all_is_all_or_nothing():
    ps = order_policy()
    before = ps.text()
    with pytest.raises(PolicyError) as info:
        ps.replace_all({"x": '(Host.Control "order" 9)', "y": "(+ 1"})
    assert str(info.value) == "y:1:1: '(' is never closed"
    assert ps.text() == before and ps.run(snapshot()).host_controls == {"order": 1}
    ps.replace_all({"x": '(Host.Control "order" 9)'})
    assert ps.names() == ["x"] and ps.run(snapshot()).host_controls == {"order": 9}


def test_run_time_errors_name_the_policy():
    ps = PolicySet()
    ps.set("00-defs", "(defvar z 0)")
    ps.set("10-main", "\n(/ 1 z)")
    d = ps.run(snapshot())
    assert not d.ok and d.error == "10-main:2:2: division by zero"


def test_a_swap_is_atomic_for_concurrent_runs():
    ps = PolicySet()
    texts = [f'(defvar v {i}) (Host.Control "c1" v) (Host.Control "c2" v)' for i in (1, 2)]
    ps.set("p", texts[0])
    stop = threading.Event()

    def swapper():
        i = 0
        while not stop.is_set():
            i += 1
            ps.set("p", texts[i % 2])
    t = threading.Thread(target=swapper)
    t.start()
    try:
        snap = snapshot()
        for _ in range(300):
            d = ps.run(snap)
            assert d.ok and d.host_controls["c1"] == d.host_controls["c2"] in (1, 2)
    finally:
        stop.set()
        t.join()


def test_limits_apply_to_a_policy_set():
    ps = PolicySet(max_steps=50)
    ps.set("loop", "(def f (n) (if (< n 1) 0 (+ 1 (f (- n 1))))) (f 100)")
    d = ps.run(snapshot())
    assert not d.ok and "more than 50 steps" in d.error


# -- files ---------------------------------------------------------------------------------------

@pytest.fixture
def policy_dir(tmp_path):
    d = tmp_path / "policies"
    d.mkdir()
    (d / "20-second.policy").write_text('(Host.Control "second" first)\n')
    (d / "10-first.policy").write_text("(defvar first 1)\n")
    (d / ".hidden.policy").write_text("(this would not parse\n")
    (d / "notes.txt").write_text("(nor this\n")
    (d / "30-backup.policy~").write_text("(nor this\n")
    return d


def test_read_policy_paths_on_a_directory(policy_dir):
    sources = read_policy_paths([str(policy_dir)])
    assert [s.name for s in sources] == [str(policy_dir / "10-first.policy"), str(policy_dir / "20-second.policy")]
    assert sources[0].text == "(defvar first 1)\n"
    assert compile_policy(sources).evaluate(host()) == [1, None]


def test_read_policy_paths_files_in_the_order_given(tmp_path):
    a, b = tmp_path / "b.rules", tmp_path / "a.rules"
    a.write_text("(defvar x 1)")
    b.write_text("(defvar x 2) x")
    sources = read_policy_paths([str(a), str(b)])
    assert [s.name for s in sources] == [str(a), str(b)]
    assert compile_policy(sources).evaluate() == [1, 1, 1]


def test_read_policy_paths_missing_file(tmp_path):
    with pytest.raises(OSError):
        read_policy_paths([str(tmp_path / "missing.policy")])


def test_load_paths_directory(tmp_path):
    d = tmp_path / "p"
    d.mkdir()
    (d / "20-second.policy").write_text('(Host.Control "second" first)\n')
    (d / "10-first.policy").write_text("(defvar first 1)\n")
    (d / ".hidden.policy").write_text("(this would not parse\n")
    (d / "notes.txt").write_text("(nor this\n")
    ps = PolicySet()
    ps.load_paths(policy_dir=str(d))
    assert ps.names() == ["10-first", "20-second"]
    assert ps.run(snapshot()).host_controls == {"second": 1}
    # errors in a loaded file name the file: refused at load time ...
    (d / "15-bad.policy").write_text("\n  (+ 1 nope)\n")
    with pytest.raises(PolicyError) as info:
        ps.load_paths(policy_dir=str(d))
    assert str(info.value) == f"{d / '15-bad.policy'}:2:8: undefined variable 'nope'"
    assert ps.names() == ["10-first", "20-second"]
    # ... and at run time
    (d / "15-bad.policy").write_text('\n  (/ 1 (Host.GetVar "zero"))\n')
    ps.load_paths(policy_dir=str(d))
    assert ps.run(snapshot()).error == f"{d / '15-bad.policy'}:2:4: cannot apply / to integer and nil"
    # a policy set by name is reported by its name
    ps.set("15-bad", '(/ 1 (Host.GetVar "zero"))')
    assert ps.run(snapshot()).error == "15-bad:1:2: cannot apply / to integer and nil"


def test_load_paths_single_file(tmp_path):
    f = tmp_path / "main.rules"
    f.write_text('(Host.Control "x" 1)')
    ps = PolicySet()
    ps.load_paths(policy_file=str(f))
    assert ps.names() == [DEFAULT_POLICY_NAME]
    assert ps.run(snapshot()).host_controls == {"x": 1}


def test_load_paths_bad_file_keeps_the_old(tmp_path):
    good, bad = tmp_path / "good.rules", tmp_path / "bad.rules"
    good.write_text('(Host.Control "x" 1)')
    bad.write_text("(Host.Control")
    ps = PolicySet()
    ps.load_paths(policy_file=str(good))
    with pytest.raises(PolicyError) as info:
        ps.load_paths(policy_file=str(bad))
    assert str(info.value).startswith(f"{bad}:1:1:")
    assert ps.run(snapshot()).host_controls == {"x": 1}
