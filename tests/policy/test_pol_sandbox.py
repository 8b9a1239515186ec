"""The sandbox: only entity fields/methods and built-ins are reachable; work and depth are bounded."""

from __future__ import annotations

import time

import pytest

from mom.policy.errors import PolicyError
from mom.policy.parser import MAX_DEPTH

from .util import compiled, err, ev1, guest, host, snapshot, where

IO = [{"name": "vda", "path": "/img/vda", "guaranteed": {}, "maximum": {"total_bytes_sec": 5},
       "current": {"total_bytes_sec": 1}}]


def entities():
    return host([{"mem_free": 1, "mem_available": 2}]), [guest("vm1", [{"m": 1, "io_tune": IO}])]


@pytest.mark.parametrize("text", [
    "_x", "(defvar _x 1)", "(set _x 1)", "(def _f () 1)", "(_f)", "(def f (_a) 1)", "(let ((_a 1)) 1)",
    "(with Guests _g 1)", "(defvar x _y)",
])
def test_names_beginning_with_underscore_are_rejected(text):
    e = err(text, *entities())
    assert "reserved" in e.message or "name" in e.message
    assert e.pos is not None


@pytest.mark.parametrize("text", [
    "Host.__class__", "Host.__dict__", "Host._avgs", "Host.__slots__",
    "(with Guests guest guest.__dict__)", "(with Guests guest guest.__class__)",
    "(Host.__init__ 1)", "(Host.__class__)", "(Host._setter 1)",
    "(with Guests g (with g.io_tune tune tune.__dict__))",
])
def test_dunder_and_private_attributes_are_rejected(text):
    e = err(text, *entities())
    assert e.pos is not None


@pytest.mark.parametrize("text, message", [
    ("Host.properties", "Host has no statistic 'properties'"),
    ("Host.rows", "Host has no statistic 'rows'"),
    ("Host.latest", "Host has no statistic 'latest'"),
    ("Host.controls", "Host has no statistic 'controls'"),
    ("Host.variables", "Host has no statistic 'variables'"),
    ("Host.kind", "Host has no statistic 'kind'"),
    ("Host.label", "Host has no statistic 'label'"),
    ("Host.io_entries", "Host has no statistic 'io_entries'"),
    ("Host.Stat", "Host has no statistic 'Stat'"),
    ("Host.field", "Host has no statistic 'field'"),
    ("(with Guests g g.properties)", "guest vm1 has no statistic 'properties'"),
    ("(with Guests g (with g.io_tune tune tune.fields))", "no field 'fields'"),
    ("(with Guests g (with g.io_tune tune tune.original))", "no field 'original'"),
    ("(with Guests g (with g.io_tune tune tune.changed))", "no field 'changed'"),
    ("(with Guests g (with g.io_tune tune tune.to_json))", "no field 'to_json'"),
    ("(with Guests g (with g.io_tune tune tune.setTotalBytesSec))", "no field 'setTotalBytesSec'"),
    ("(with Guests g (with g.io_tune tune { (defvar m tune.maximum) m.keys }))", "no key 'keys'"),
    ("(with Guests g (with g.io_tune tune { (defvar m tune.maximum) m.__class__ }))", "not a valid"),
    ('(defvar s "abc") s.upper', "string has no field 'upper'"),
    ("(defvar n 1) n.real", "integer has no field 'real'"),
    ("Guests.append", "list has no field 'append'"),
])
def test_python_attributes_are_not_reachable(text, message):
    e = err(text, *entities())
    assert message in e.message


@pytest.mark.parametrize("text", [
    '(Host.field "mem_free")', "(Host.to_json)", "(Host.keys)", "(Host.latest)",
    '(with Guests g (with g.io_tune tune (tune.field "name")))', "(with Guests g (with g.io_tune tune (tune.to_json)))",
    "(with Guests g (with g.io_tune tune { (defvar m tune.maximum) (m.get 1) }))",
    '(defvar s "abc") (s.upper)', "(Guests.append 1)",
])
def test_no_method_beyond_the_list(text):
    e = err(text, *entities())
    assert "unknown method" in e.message


@pytest.mark.parametrize("text, message", [
    ('(with Guests g (with g.io_tune tune (tune.Control "a" 1)))', "io_tune entry has no method 'Control'"),
    ("(Host.setTotalBytesSec 1)", "Host has no method 'setTotalBytesSec'"),
    ('(with Guests g (with g.io_tune tune { (defvar m tune.maximum) (m.Stat "x") }))', "map has no method 'Stat'"),
    ('(Guests.Stat "x")', "list has no method 'Stat'"),
])
def test_methods_only_on_their_own_kind(text, message):
    assert message in err(text, *entities()).message


def test_odd_method_arguments_are_policy_errors():
    for text in ["(Host.Control Guests 1)", "(Host.StatAvg Guests)", "(Host.Prop Guests)", "(Host.Stat nil)",
                 "(Host.GetVar Guests)", "(with Guests g (with g.io_tune t (t.setTotalBytesSec 1e400)))",
                 "(with Guests g (with g.io_tune t (t.setTotalBytesSec Host)))"]:
        err(text, *entities())


# -- bounded work ------------------------------------------------------------------------------

def quick(text, seconds=2.0, **limits):
    start = time.monotonic()
    e = err(text, *entities(), **limits)
    assert time.monotonic() - start < seconds, f"took too long: {text[:60]}"
    assert e.pos is not None
    return e


def test_infinite_recursion_ends_in_a_policy_error():
    e = quick("(def f (x) (f x))\n(f 1)")
    assert "nested deeper than" in e.message and where(e)[1:] == (1, 12)


def test_mutual_recursion_ends_in_a_policy_error():
    e = quick("(def a (x) (b x)) (def b (x) (a x)) (a 1)")
    assert "nested deeper than" in e.message


def test_max_depth_is_configurable():
    text = "(def d (n) (if (== n 0) 0 (+ 1 (d (- n 1)))))"
    assert ev1(text + "(d 40)", max_depth=50) == 40
    assert "nested deeper than 50" in err(text + "(d 60)", max_depth=50).message


def test_exponential_recursion_is_bounded_by_steps():
    text = "(def f (n) (if (< n 1) 0 (+ (f (- n 1)) (f (- n 1)))))\n(f 40)"
    e = quick(text, max_steps=1000)
    assert "more than 1000 steps" in e.message
    assert ev1("(def f (n) (if (< n 1) 1 (+ (f (- n 1)) (f (- n 1))))) (f 5)", max_steps=1000) == 32


def test_nested_loops_are_bounded_by_steps():
    text = "(defvar l (* (with Guests g 1) 1000)) (with l a (with l b (with l c 1)))"
    e = quick(text, max_steps=10000)
    assert "more than 10000 steps" in e.message


def test_the_step_budget_is_per_run():
    p = compiled("(def f (n) (if (< n 1) 0 (+ 1 (f (- n 1))))) (f 50)", max_steps=60)
    for _ in range(3):
        assert p.evaluate()[-1] == 50


def test_deep_expression_inside_deep_recursion_is_a_policy_error():
    depth = MAX_DEPTH - 5
    body = "(+ 1 " * depth + "(f x)" + ")" * depth
    e = quick(f"(def f (x) {body})\n(f 1)")
    assert "nested" in e.message


def test_deep_source_nesting_is_a_policy_error():
    with pytest.raises(PolicyError):
        compiled("(" * 5000 + ")" * 5000)
    with pytest.raises(PolicyError):
        compiled("(def f () " + "{" * 5000 + "}" * 5000 + ")")


@pytest.mark.parametrize("text", [
    '(* 100000000 "ab")', '(* "ab" 100000000)', "(<< 1 100000)", "(<< 1 (<< 1 62))",
    "(defvar a 2)" + " (set a (* a a))" * 20,
    "(defvar a 3)" + " (set a (* a a))" * 20,
    '(defvar s "abcdefgh")' + " (set s (+ s s))" * 40,
    "(defvar l (with Guests g 1))" + " (set l (+ l l))" * 40,
    "(defvar l (* (with Guests g 1) 1000000)) (* l 2)",
    "(def sq (n) (sq (* n n))) (sq 3)",
    '(def dbl (s) (dbl (+ s s))) (dbl "ab")',
    "(defvar a 7)" + " (set a (<< a 1000))" * 10,
])
def test_huge_results_are_policy_errors_quickly(text):
    e = quick(text)
    assert any(w in e.message for w in ("larger than", "longer than", "more than", "nested deeper")), e.message


def test_large_but_allowed_results():
    assert ev1("(<< 1 4000)") == 1 << 4000
    assert len(ev1('(* 1000 "ab")')) == 2000
    assert ev1("(* 1e308 10)") == float("inf")


def test_policy_errors_from_limits_leave_run_usable():
    p = compiled("(def f (x) (f x)) (f 1)")
    for _ in range(2):
        d = p.run(snapshot())
        assert not d.ok and "nested deeper" in d.error
