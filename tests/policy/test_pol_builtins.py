"""Operators and built-ins: values follow Python's rules."""

from __future__ import annotations

import logging

import pytest

from .util import err, ev, ev1, guest, host, same, where


@pytest.mark.parametrize("text, value", [
    ("(+ 1 2)", 3), ("(+ 1 2.5)", 3.5), ("(- 10 4)", 6), ("(- 1 2.5)", -1.5), ("(- -5 1)", -6),
    ("(* 2 3)", 6), ("(* 2 3.5)", 7.0),
    ("(/ 7 2)", 3.5), ("(/ 6 2)", 3.0), ("(/ 1 4.0)", 0.25),     # true division, always a float
    ('(+ "ab" "cd")', "abcd"), ('(* 3 "ab")', "ababab"), ('(* "ab" 3)', "ababab"), ('(* 0 "ab")', ""),
    ("(<< 1 10)", 1024), ("(>> 1024 3)", 128), ("(>> -8 1)", -4),
    ("(abs -3)", 3), ("(abs -2.5)", 2.5), ("(abs 4)", 4),
    ("(min 3 1 2)", 1), ("(max 3 1 2)", 3), ("(min 5)", 5), ('(max "a" "b")', "b"),
    ("(min 1.0 1)", 1.0), ("(min 1 1.0)", 1), ("(max 2 2.0)", 2), ("(max 2.0 2)", 2.0),  # the first extreme
    ("(min 2 1.0 1)", 1.0), ("(max 0.5 1 1.0)", 1),
])
def test_arithmetic_values(text, value):
    assert same(ev1(text), value)


@pytest.mark.parametrize("text, value", [
    ("(< 1 2)", True), ("(< 2 1)", False), ("(> 2 1)", True), ("(<= 2 2)", True), ("(<= 3 2)", False),
    ("(>= 2 2.0)", True), ("(== 1 1.0)", True), ("(== 1 2)", False), ('(== "a" "a")', True),
    ('(!= "a" "b")', True), ("(!= 1 1)", False), ('(< "a" "b")', True), ("(== nil nil)", True),
    ("(== 0 nil)", False),
    ("(not 0)", True), ("(not 1)", False), ('(not "")', True), ('(not "a")', False), ("(not nil)", True),
    ("(not 0.0)", True),
])
def test_comparisons_and_not_return_booleans(text, value):
    assert same(ev1(text), value)


@pytest.mark.parametrize("text, value", [
    ("(and 1 2 3)", 3), ("(and 1 0 2)", 0), ('(and 1 "" 2)', ""), ("(and 1 nil 2)", None),
    ("(and 0.0 1)", 0.0), ("(and 5)", 5), ('(and "x" 2.5)', 2.5),
    ('(or 0 nil "x" 5)', "x"), ("(or 0 nil)", None), ('(or 0 "")', ""), ("(or 1 2)", 1), ("(or 0)", 0),
    ("(or nil 0.0 0)", 0),
])
def test_and_or_return_an_operand(text, value):
    assert same(ev1(text), value)


def test_and_evaluates_all_arguments():
    assert ev("(defvar n 0) (and 0 (set n 1)) n") == [0, 0, 1]
    h = host()
    assert ev1('(and nil (Host.Control "later" 7))', h) is None
    assert h.controls == {"later": 7}


def test_or_evaluates_all_arguments():
    assert ev("(defvar n 0) (or 1 (set n 2) (set n 3)) n") == [0, 1, 3]
    h = host()
    assert ev1('(or "first" (Host.Control "later" 7))', h) == "first"
    assert h.controls == {"later": 7}


def test_and_or_in_function_arguments_evaluate_all():
    text = """
    (defvar calls 0)
    (def bump (v) { (set calls (+ calls 1)) v })
    (and (bump 0) (bump 1) (bump 2))
    (or (bump 1) (bump 0))
    calls
    """
    assert ev(text)[-3:] == [0, 1, 5]


@pytest.mark.parametrize("text, value", [
    ("(valid 1 0 \"\")", True), ("(valid 1 nil)", False), ("(valid nil)", False), ("(valid 0)", True),
    ("(valid)", True), ("(valid 0.0 \"x\" 2)", True),
    ("(null nil)", True), ('(null "")', True), ('(null nil "")', True), ("(null 0)", False),
    ("(null nil 0)", False), ('(null "a")', False), ('(null "" "a")', False), ("(null)", True),
    ("(null 0.0)", False),
])
def test_valid_and_null(text, value):
    assert same(ev1(text), value)


def test_null_of_empty_and_non_empty_lists():
    assert ev1("(null Guests)", host(), []) is True
    assert ev1("(null Guests)", host(), [guest("a")]) is False
    assert ev1("(valid Guests Host)", host(), []) is True


def test_debug_logs_its_arguments_and_returns_the_last(caplog):
    with caplog.at_level(logging.DEBUG, logger="mom.policy.debug"):
        assert same(ev1('(debug 1 "two" 3.5)'), 3.5)
        assert ev1('(debug "only")') == "only"
        assert ev1("(debug nil)") is None
    records = [r for r in caplog.records if r.name == "mom.policy.debug"]
    assert len(records) == 3
    assert "1 two 3.5" in records[0].getMessage()
    assert "only" in records[1].getMessage()


def test_debug_is_evaluated_for_its_value():
    assert ev("(defvar x (debug 1 2)) (+ x 1)") == [2, 3]


def test_if_takes_one_branch_only():
    assert ev1("(if 1 2 (/ 1 0))") == 2
    assert ev1("(if 0 (/ 1 0) 3)") == 3
    assert ev1('(if "" 1 2)') == 2
    assert ev1("(if nil 1 2)") == 2
    assert ev("(defvar n 0) (if 1 0 (set n 5)) n") == [0, 0, 0]


def test_with_returns_the_list_of_values():
    gs = [guest("a"), guest("b")]
    assert ev1('(with Guests g (g.Prop "name"))', host(), gs) == ["a", "b"]
    assert ev1("(with Guests g 1)", host(), []) == []


def test_blocks_return_the_last_value():
    assert ev1("{ (defvar a 1) (defvar b 2) (+ a b) }") == 3
    assert ev1("{ 1 }") == 1


@pytest.mark.parametrize("text", ["+", "-", "<<"])
def test_operator_used_as_a_value(text):
    e = err(f"(defvar x {text})")
    assert where(e)[1:] == (1, 11)
