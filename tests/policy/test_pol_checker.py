"""The static checker: scopes as the evaluator has them (dynamic scope: free
variables in functions are warnings), statistic names by entity kind, and
"did you mean" suggestions that stay cheap for policies with very many names."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from mom.policy import checker
from mom.policy.checker import Suggester
from mom.policy.errors import Source
from mom.policy.validate import PolicyChecks, check_policy

from .util import registry_checks


def findings(text: str, checks: PolicyChecks | None = None) -> list[str]:
    checks = checks if checks is not None else PolicyChecks()
    findings = check_policy([Source("t", text)], checks).findings
    return [f"{f.pos.line}:{f.pos.col} {f.severity}: {f.message}" for f in findings]


@pytest.mark.parametrize("text", [
    "(defvar a 1) (+ a 1)",
    "(+ later 1) (defvar later 2)",  # top-level defvars are globals wherever they are
    "(if 1 (defvar in_if 1) 0) in_if",  # if does not open a scope
    "(let ((a 1) (b (+ a 1))) (+ a b))",  # a later binding sees an earlier one
    "(let ((a 1)) (defvar c 2) (+ a c))",
    "(with Guests g (+ 1 (g.StatAvg \"x\")))",
    "(with (with Guests g g) h { (defvar t 1) (+ t 1) })",
    "(def f (x) { (defvar y x) (+ x y) }) (f 1)",
    "(def f (x) (g x)) (def g (y) y) (f 1)",  # functions are global: a later def counts
    "(with Guests g (let ((n (g.Prop \"name\"))) (+ n \"\")))",
])
def test_bound_names_give_no_finding(text):
    assert findings(text) == []


@pytest.mark.parametrize("text, expected", [
    ("(let ((a 1)) a) a", ["1:17 error: undefined variable 'a'"]),  # gone after its let
    ("(with Guests g 1) g", ["1:19 error: undefined variable 'g'"]),
    ("(with Guests g (defvar inner 1)) inner", ["1:34 error: undefined variable 'inner'"]),
    ("(def f (x) x) x", ["1:15 error: undefined variable 'x'"]),  # a parameter is the function's
    ("(defvar pressure 1) (+ presure 1)", ["1:24 error: undefined variable 'presure' (did you mean 'pressure'?)"]),
    ("(let ((pressure 1)) presure)", ["1:21 error: undefined variable 'presure' (did you mean 'pressure'?)"]),
    ("(def f (a b) a) (f 1)", ["1:17 error: f takes 2 arguments, got 1"]),
    ("(setq nowhere 1)", ["1:7 error: setq of undefined variable 'nowhere'"]),
    ("(Host.Stat)", ["1:1 error: Stat takes 1 argument, got 0"]),  # the compiler's
    ("(Host.Control)", ["1:1 error: Control takes 2 arguments, got 0"]),
    ("(+ Host.Control 1)", ["1:4 error: method Control used as a value; call it: (Host.Control ...)"]),
])
def test_errors(text, expected):
    assert findings(text) == expected


def test_free_variables_in_functions_are_one_warning_each():
    text = "(def f () (+ caller_var (* caller_var other)))\n(def g () caller_var)\n"
    assert findings(text) == [
        "1:14 warning: 'caller_var' is not defined in function f: it must be bound by every caller (dynamic scope)",
        "1:39 warning: 'other' is not defined in function f: it must be bound by every caller (dynamic scope)",
        "2:11 warning: 'caller_var' is not defined in function g: it must be bound by every caller (dynamic scope)"]


def test_a_function_body_does_not_see_the_let_around_its_def():
    assert findings("(let ((a 1)) (def f () a))") == [
        "1:24 warning: 'a' is not defined in function f: it must be bound by every caller (dynamic scope)"]


def test_statistics_are_checked_by_entity_kind():
    checks = registry_checks()
    assert findings("(with Guests g g.balloon_cur) Host.mem_free (Host.StatAvg \"mem_free\")", checks) == []
    assert findings("Host.balloon_cur", checks) == [
        "1:1 error: no collector provides statistic 'balloon_cur' for the host"]
    assert findings("(with Guests g (g.Stat \"ksm_run\"))", checks) == [
        "1:24 error: no collector provides statistic 'ksm_run' for a guest"]
    # kind not known (a parameter): any entity's statistic will do
    assert findings("(def f (e) (+ e.ksm_run e.balloon_cur)) (def h (e) e.balon_cur)", checks) == [
        "1:52 error: no collector provides statistic 'balon_cur' for any entity (did you mean 'balloon_cur'?)"]
    # a name rebound by let or with is no longer the host
    assert findings("(with (with Guests g g) Host Host.balloon_cur)", checks) == []


def test_io_tune_entries_and_maps_are_fields_of_any_entity():
    text = "(with Guests g (with g.io_tune t { (defvar m t.maximum) m.read_bytes_sec }))"
    assert findings(text, registry_checks()) == []


def test_suggestions_among_many_names_use_the_index():
    names = [f"limit{i}" for i in range(5000)] + ["balloon_target", "host_free_percent"]
    s = Suggester(names)
    assert len(s.names) > Suggester.SMALL
    assert s("host_free_percnt") == "host_free_percent"  # a deletion
    assert s("ballon_target") == "balloon_target"  # an insertion
    assert s("balloon_targte") == "balloon_target"  # a transposition
    assert s("limit4321x") == "limit4321"
    assert s("something_else") is None
    # Only names one edit away are candidates (what the index finds), however close
    # a name two edits away is: the few names below would offer it.
    assert s("balon_targt") is None


def test_suggestions_among_few_names_compare_with_each():
    s = Suggester(["mem_free", "mem_unused", "balloon_cur", "balloon_target"])
    assert len(s.names) <= Suggester.SMALL
    assert s("mem_fre") == "mem_free" and s("balloncur") == "balloon_cur"
    assert s("balon_targt") == "balloon_target"  # two edits away: difflib compares it with each name


# -- one test per diagnostic ----------------------------------------------------------------
# Known names as a caller hands them over: plain sets, no registry.
KNOWN = PolicyChecks(host_fields=frozenset({"mem_free", "ksm_run"}), guest_fields=frozenset({"balloon_cur"}),
                     host_controls={"ksm_run": "KSM"}, guest_controls={"balloon_target": "Balloon"},
                     enabled_controllers=frozenset({"Balloon"}))

# Every message the checker can add, by its template in checker.py (severity: the
# f-string with its fields as {}), with policies that provoke it and what they get.
DIAGNOSTICS: dict[str, list[tuple[str, str]]] = {
    "error: {wrong}": [  # the arity of a built-in a policy may replace (runtime.LATER_BUILTINS)
        ("(round 1 2)", "1:1 error: round takes 1 argument, got 2"),
        ("\n (clamp 1)", "2:2 error: clamp takes 3 arguments, got 1")],
    "error: undefined function {}{}": [
        ("(frobnicate 1)", "1:2 error: undefined function 'frobnicate'"),
        ("(def scale (x) x) (scal 1)", "1:20 error: undefined function 'scal' (did you mean 'scale'?)")],
    "error: {} takes {} argument{}, got {}": [
        ("(def f (a b) a) (f 1)", "1:17 error: f takes 2 arguments, got 1"),
        ("(def g (a) a) (def g (a b) a) (g)", "1:31 error: g takes 1 or 2 arguments, got 0"),
        ("(def h (a) a) (h)", "1:15 error: h takes 1 argument, got 0")],
    "error: method {} used as a value; call it: ({} ...)": [
        ("(+ Host.Stat 1)", "1:4 error: method Stat used as a value; call it: (Host.Stat ...)")],
    "warning: {} is not defined in function {}: it must be bound by every caller (dynamic scope)": [
        ("(def f () (set level 2))",
         "1:16 warning: 'level' is not defined in function f: it must be bound by every caller (dynamic scope)")],
    "error: {} {}{}": [  # unbound outside a function
        ("(+ 1 nothing)", "1:6 error: undefined variable 'nothing'"),
        ("(set counter 1)", "1:6 error: set of undefined variable 'counter'"),
        ("(defvar counter 1) (setq countr 2)",
         "1:26 error: setq of undefined variable 'countr' (did you mean 'counter'?)")],
    "error: no collector provides statistic {} for {}{}": [
        ("Host.mem_fre",
         "1:1 error: no collector provides statistic 'mem_fre' for the host (did you mean 'mem_free'?)"),
        ("(with Guests g (g.StatAvg \"swap\"))", "1:27 error: no collector provides statistic 'swap' for a guest"),
        ("(def f (e) e.balloon_curr)",
         "1:12 error: no collector provides statistic 'balloon_curr' for any entity (did you mean 'balloon_cur'?)")],
    "error: {} is a {} control: no controller acts on it for {}": [
        ("(Host.Control \"balloon_target\" 1)",
         "1:15 error: 'balloon_target' is a guest control: no controller acts on it for the host"),
        ("(with Guests g (g.GetControl \"ksm_run\"))",
         "1:30 error: 'ksm_run' is a host control: no controller acts on it for a guest")],
    "error: unknown control {}: no controller acts on it{}": [
        ("(with Guests g (g.Control \"balloon_targt\" 1))",
         "1:27 error: unknown control 'balloon_targt': no controller acts on it (did you mean 'balloon_target'?)"),
        ("(def f (e) (e.Control \"cpu_shares\" 1))",
         "1:23 error: unknown control 'cpu_shares': no controller acts on it")],
    "warning: controller {} is not enabled: {} has no effect": [
        ("(Host.Control \"ksm_run\" 1) (Host.Control \"ksm_run\" 0)",  # once per control
         "1:15 warning: controller KSM is not enabled: ksm_run has no effect")],
}


def checker_templates() -> set[str]:
    """The message templates of every ``self.add(node, severity, message)`` in checker.py."""
    tree = ast.parse(Path(checker.__file__).read_text())
    found = set()
    for node in ast.walk(tree):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "add"
                and isinstance(node.func.value, ast.Name) and node.func.value.id == "self" and len(node.args) == 3):
            severity, message = node.args[1], node.args[2]
            assert isinstance(severity, ast.Constant), ast.unparse(node)
            if isinstance(message, ast.JoinedStr):
                text = "".join(v.value if isinstance(v, ast.Constant) else "{}" for v in message.values)
            else:
                text = "{" + ast.unparse(message) + "}"
            found.add(f"{severity.value}: {text}")
    return found


def test_every_diagnostic_of_the_checker_has_a_test():
    assert checker_templates() == set(DIAGNOSTICS)


@pytest.mark.parametrize("template, text, expected",
                         [(t, text, e) for t, cases in DIAGNOSTICS.items() for text, e in cases])
def test_each_diagnostic_has_its_text_and_position(template, text, expected):
    assert findings(text, KNOWN) == [expected]
    if template != "error: {wrong}":  # that text is the compiler's builtin_arity_error
        pattern = ".*".join(re.escape(part) for part in template.split("{}"))
        assert re.fullmatch(r"\d+:\d+ " + pattern, expected), "the case does not show its template"
