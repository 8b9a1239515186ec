"""Run-time and load-time errors: PolicyError with the exact position, render(), the call chain."""

from __future__ import annotations

import pytest

from mom.policy.errors import PolicyError, Source
from mom.policy.policy import compile_policy

from .util import compiled, err, guest, host, snapshot, where

UNDEFINED_IN_FUNCTION = """\
(def f (x)
  (+ x undefined_var))
(defvar a 1)
(f a)
"""


def test_undefined_variable_inside_a_function_called_from_elsewhere():
    e = err(UNDEFINED_IN_FUNCTION)
    assert e.message == "undefined variable 'undefined_var'"
    assert str(e) == "t.policy:2:8: undefined variable 'undefined_var'"
    assert [(name, pos.line, pos.col) for name, pos in e.calls] == [("f", 4, 1)]
    assert e.render() == (
        "t.policy:2:8: error: undefined variable 'undefined_var'\n"
        "      (+ x undefined_var))\n"
        "           ^\n"
        "  in f, called at t.policy:4:1")


def test_call_chain_lists_every_caller_innermost_first():
    text = """\
(def inner () (/ 1 zero))
(def middle () {
   (inner) })
(def outer ()
  (middle))
(defvar zero 0)
(+ 1 (outer))
"""
    e = err(text)
    assert str(e) == "t.policy:1:16: division by zero"
    assert [(n, p.line, p.col) for n, p in e.calls] == [("inner", 3, 4), ("middle", 5, 3), ("outer", 7, 6)]
    lines = e.render().splitlines()
    assert lines[1:] == [
        "    (def inner () (/ 1 zero))",
        "                   ^",
        "  in inner, called at t.policy:3:4",
        "  in middle, called at t.policy:5:3",
        "  in outer, called at t.policy:7:6"]


def test_errors_in_separate_sources_name_their_source():
    sources = [Source("00-a.policy", "(defvar a 1)\n"), Source("01-b.policy", "(def f () (+ a b))\n"),
               Source("02-c.policy", "\n\n   (f)")]
    with pytest.raises(PolicyError) as info:
        compile_policy(sources).evaluate()
    e = info.value
    assert str(e) == "01-b.policy:1:16: undefined variable 'b'"
    assert [(n, str(p)) for n, p in e.calls] == [("f", "02-c.policy:3:4")]
    assert "  in f, called at 02-c.policy:3:4" in e.render()


@pytest.mark.parametrize("text, line, col, message", [
    # if takes exactly three arguments, found when the policy is loaded
    ("(defvar x 1)\n  (if x 2)", 2, 3, "(if COND THEN ELSE) takes 3 arguments, got 2"),
    ("(if 1 2 3 4)", 1, 1, "(if COND THEN ELSE) takes 3 arguments, got 4"),
    ("(if)", 1, 1, "takes 3 arguments, got 0"),
    ("(defvar x)", 1, 1, "(defvar NAME VALUE) takes 2 arguments, got 1"),
    ("(set x 1 2)", 1, 1, "takes 2 arguments, got 3"),
    ("(def f (x))", 1, 1, "takes 3 arguments, got 2"),
    ("(with Guests g)", 1, 1, "(with LIST VAR EXPR) takes 3 arguments, got 2"),
    ("(let ((x 1)))", 1, 1, "needs bindings and at least one expression"),
    ("(let (x 1) x)", 1, 7, "a let binding is (NAME VALUE)"),
    ("(def f x 1)", 1, 8, "expected a parameter list"),
    ("(def f (1) 1)", 1, 9, "expected a parameter name"),
    ("(defvar 1 2)", 1, 9, "expected a variable name"),
    ("(defvar nil 2)", 1, 9, "cannot be used as a variable name"),
    # built-ins
    ("(+ 1)", 1, 1, "+ takes 2 arguments, got 1"),
    ("(- 1 2 3)", 1, 1, "- takes 2 arguments, got 3"),
    ("\n (abs 1 2)", 2, 2, "abs takes 1 argument, got 2"),
    ("(not)", 1, 1, "not takes 1 argument, got 0"),
    ("(min)", 1, 1, "min takes at least 1"),
    ("(and)", 1, 1, "and takes at least 1"),
    ("(debug)", 1, 1, "debug takes at least 1"),
    ('(Host.Control "a")', 1, 1, "Control takes 2 arguments, got 1"),
    ("(Host.Stat)", 1, 1, "Stat takes 1 argument, got 0"),
    # shapes
    ("()", 1, 1, "empty expression ()"),
    ("(1 2)", 1, 2, "expected a function or form name"),
    ('("f" 2)', 1, 2, "expected a function or form name"),
])
def test_structural_errors_at_load_time(text, line, col, message):
    with pytest.raises(PolicyError) as info:
        compiled(text)  # found when compiling: nothing has run
    e = info.value
    assert where(e) == ("t.policy", line, col)
    assert message in e.message


@pytest.mark.parametrize("text, line, col, message", [
    ("(def f (a b) a)\n(f 1)", 2, 1, "f takes 2 arguments, got 1"),
    ("(def f () 1)\n  (+ 1 (f 2 3))", 2, 8, "f takes 0 arguments, got 2"),
    ("(def f (a) a) (def g () (f)) (g)", 1, 25, "f takes 1 argument, got 0"),
    ("(defvar z 0)\n(/ 10 z)", 2, 2, "division by zero"),
    ("(/ 1.5 0.0)", 1, 2, "division by zero"),
    ('(+ 1 "a")', 1, 2, "cannot apply + to integer and string"),
    ('(- "a" "b")', 1, 2, "cannot apply - to string and string"),
    ('(< 1 "a")', 1, 2, "cannot apply < to integer and string"),
    ("(* nil 2)", 1, 2, "cannot apply * to nil and integer"),
    ('(abs "x")', 1, 2, "cannot apply abs to string"),
    ('(min 1 "x")', 1, 2, "cannot apply min"),
    ("(<< 1.5 2)", 1, 2, "cannot apply << to float and integer"),
    ("(>> 1 -1)", 1, 2, "negative shift count"),
    ("(/ (<< 1 4000) 3)", 1, 2, "number too large"),
    ("(Host.Foo 1)", 1, 2, "unknown method 'Foo'"),
    ("(defvar x nil)\n(+ 1 x.foo)", 2, 6, "nil has no field 'foo'"),
    ("(defvar x nil)\n(x.Stat 1)", 2, 2, "nil has no method 'Stat'"),
    ('(defvar s "str") s.upper', 1, 18, "string has no field 'upper'"),
    ("(with 5 x x)", 1, 7, "with needs a list, got integer"),
    ("(with nil x x)", 1, 7, "with needs a list, got nil"),
    ("(undefined_fn 1)", 1, 1, "undefined function 'undefined_fn'"),
    ("(+ 1 nope)", 1, 6, "undefined variable 'nope'"),
])
def test_run_time_errors(text, line, col, message):
    e = err(text, host([{"mem_free": 1}]), [])
    assert where(e) == ("t.policy", line, col)
    assert message in e.message
    assert str(e) == f"t.policy:{line}:{col}: {e.message}"
    rendered = e.render().splitlines()
    assert rendered[0] == f"t.policy:{line}:{col}: error: {e.message}"
    assert rendered[2] == "    " + " " * (col - 1) + "^"


def test_method_type_errors():
    e = err('(with Guests g (g.setTotalBytesSec 1))', host(), [guest("a")])
    assert "Guest has no method 'setTotalBytesSec'" in e.message and where(e)[1:] == (1, 17)
    e = err("(Host.Stat Guests)", host([{"a": 1}]), [])
    assert "cannot apply Stat to list" in e.message and where(e)[1:] == (1, 2)


def test_a_failed_run_decides_nothing():
    snap = snapshot([{"mem_free": 1}], {"vm1": [{"io_tune": [{"name": "vda", "current": {"total_bytes_sec": 1}}]}]})
    text = """
    (Host.Control "ksm_run" 1)
    (with Guests g (g.Control "balloon_target" 5))
    (with Guests g (with g.io_tune t (t.setTotalBytesSec 7)))
    (Host.SetVar "v" 1)
    (defvar zero 0)
    (/ 1 zero)
    """
    d = compiled(text).run(snap)
    assert d.ok is False
    assert d.error == "t.policy:7:6: division by zero"
    assert "\n" not in d.error
    assert d.host_controls == {} and d.guest_controls == {}
    assert d.policy_error is not None and d.policy_error.render().startswith("t.policy:7:6: error:")
    assert d.to_json() == {"ok": False, "error": "t.policy:7:6: division by zero",
                           "host_controls": {}, "guest_controls": {}}


def test_error_without_position_still_renders():
    assert PolicyError("boom").render() == "error: boom"
    assert str(PolicyError("boom")) == "boom"


def test_the_call_chain_is_bounded():
    text = "(def f (n) (if (== n 0) (/ 1 n) (f (- n 1)))) (f 50)"
    e = err(text)
    assert e.message == "division by zero" and len(e.calls) <= 128
    lines = e.render().splitlines()
    assert "in f, called at t.policy:1:33 (50 times)" in lines[3]
    assert len(lines) <= 12

    deep = err("(def g (n) (if (== n 0) (/ 1 n) (h (- n 1))))(def h (n) (g n)) (g 90)")
    assert len(deep.render().splitlines()) <= 12  # alternating calls do not group; the listing is cut
