"""Operators and built-ins: values follow Python's rules."""

from __future__ import annotations

import logging

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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


def test_and_stops_at_the_first_false_argument():
    assert ev("(defvar n 0) (and 0 (set n 1)) n") == [0, 0, 0]
    h = host()
    assert ev1('(defvar False 0) (and False (Host.Control "x" 1))', h) == 0  # vdsm's defines: False is 0
    assert h.controls == {}  # the later argument never ran
    h = host()
    assert ev1('(and nil (Host.Control "later" 7))', h) is None
    assert h.controls == {}
    h = host()
    assert ev1('(and 1 (Host.Control "ran" 7))', h) is None  # a true argument goes on
    assert h.controls == {"ran": 7}


def test_or_stops_at_the_first_true_argument():
    assert ev("(defvar n 0) (or 1 (set n 2) (set n 3)) n") == [0, 1, 0]
    assert ev("(defvar n 0) (or 0 (set n 2) (set n 3)) n") == [0, 2, 2]
    h = host()
    assert ev1('(or "first" (Host.Control "later" 7))', h) == "first"
    assert h.controls == {}


def test_a_skipped_argument_cannot_fail_the_run():
    # The original evaluated every argument, so such guards had to be nested ifs.
    assert ev1("(defvar x nil) (and (valid x) (> x 5))") is False
    assert ev1("(or 1 (/ 1 0))") == 1
    assert ev1("(and 0 (undefined_function 1))") == 0


@pytest.mark.parametrize("form, calls, value", [
    ("(and (bump 0) (bump 1) (bump 2))", 1, 0),
    ("(and (bump 1) (bump 2) (bump 0) (bump 3))", 3, 0),
    ("(and (bump 1) (bump 2) (bump 3) (bump 4))", 4, 4),
    ("(or (bump 1) (bump 0))", 1, 1),
    ("(or (bump 0) (bump nil) (bump 0) (bump 5))", 4, 5),
    ("(or (bump 0) (bump 0) (bump 7))", 3, 7),
    ("(or (bump 0) (bump nil))", 2, None),
    ("(and (bump 1) (bump 2))", 2, 2),
])
def test_and_or_evaluate_in_order_until_decided(form, calls, value):
    text = f"""
    (defvar calls 0)
    (def bump (v) {{ (set calls (+ calls 1)) v }})
    (defvar result {form})
    calls
    """
    values = ev(text)
    assert values[-1] == calls and same(values[-2], value)


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


# -- built-ins over lists: what (with Guests vm EXPR) returns ----------------------------------

def fleet(*values):
    """Guests whose newest ``x`` is each value (nil included)."""
    return [guest(f"vm{i}", [{"x": v}]) for i, v in enumerate(values)]


def over_guests(call: str, *values):
    """``call`` with LIST standing for the list of the guests' x."""
    return ev1(call.replace("LIST", "(with Guests vm vm.x)"), host(), fleet(*values))


@pytest.mark.parametrize("call, values, expected", [
    ("(sum LIST)", (1, 2, 3), 6), ("(sum LIST)", (1, 2.5), 3.5), ("(sum LIST)", (), 0),
    ("(sum LIST)", (None, 4, None), 4), ("(sum LIST)", (None,), 0), ("(sum LIST)", (True, True, 1), 3),
    ("(count LIST)", (1, 2, 3), 3), ("(count LIST)", (None, 0, None, ""), 2), ("(count LIST)", (), 0),
    ("(sort LIST)", (3, 1.5, 2), [1.5, 2, 3]), ("(sort LIST)", (None, 2, None, 1), [1, 2]),
    ("(sort LIST)", (), []), ("(sort LIST)", (None,), []),
    ("(min-of LIST)", (3, 1, 2), 1), ("(min-of LIST)", (None, 5, 4.0), 4.0), ("(min-of LIST)", (), None),
    ("(min-of LIST)", (None, None), None), ("(min-of LIST)", (1.0, 1), 1.0),  # the first smallest, itself
    ("(max-of LIST)", (3, 1, 2), 3), ("(max-of LIST)", (None, 5, 4.0), 5), ("(max-of LIST)", (), None),
    ("(max-of LIST)", (2, 2.0), 2),
    ("(nth LIST 0)", (7, 8), 7), ("(nth LIST 1)", (7, None), None), ("(nth LIST 2)", (7, 8), None),
    ("(nth LIST 0)", (), None),
])
def test_list_built_ins(call, values, expected):
    assert same(over_guests(call, *values), expected)


def test_list_built_ins_give_readable_policies():
    gs = [guest(f"vm{i}", [{"balloon_cur": c, "balloon_min": 100}]) for i, c in enumerate((400, 1000, 250))]
    text = """
    (defvar spare (sum (with Guests vm (- vm.balloon_cur vm.balloon_min))))
    (defvar largest (max-of (with Guests vm vm.balloon_cur)))
    (defvar big (count (with Guests vm (if (> vm.balloon_cur 300) 1 nil))))
    (defvar median (nth (sort (with Guests vm vm.balloon_cur)) (floor (/ (count Guests) 2))))
    (+ (+ spare largest) (* 1000000 (+ big (* 10 median))))
    """
    assert ev1(text, host(), gs) == (300 + 900 + 150) + 1000 + 1_000_000 * (2 + 10 * 400)


def test_sort_returns_a_new_list():
    h = host(variables={"xs": [3, 1, 2]})
    assert ev1('(defvar xs (Host.GetVar "xs")) (defvar s (sort xs)) (nth xs 0)', h) == 3


@pytest.mark.parametrize("call, message, col", [
    ("(sum 5)", "sum needs a list, got integer", 2),
    ("(count nil)", "count needs a list, got nil", 2),
    ('(sort "abc")', "sort needs a list, got string", 2),
    ("(min-of Host)", "min-of needs a list, got Host", 2),
    ("(max-of (with Guests vm (vm.Prop \"name\")))", "max-of: item 0 of the list is a string, not a number", 2),
    ("(sum Guests)", "sum: item 0 of the list is a Guest, not a number", 2),
    ("(sort (with Guests vm (with Guests w 1)))", "sort: item 0 of the list is a list, not a number", 2),
    ("(nth Guests 1.0)", "nth: the index must be an integer, not a float (use floor or round)", 2),
    ("(nth Guests -1)", "nth: index -1 is negative", 2),
    ("(nth 3 0)", "nth needs a list, got integer", 2),
])
def test_list_built_in_errors_are_one_line_with_the_position(call, message, col):
    e = err(f"(defvar pad 0)\n  {call}", host(), fleet(1))
    assert e.message == message
    assert where(e) == ("t.policy", 2, col + 2)
    assert str(e) == f"t.policy:2:{col + 2}: {message}" and "\n" not in str(e)


def test_the_budget_stops_a_huge_sort():
    # 200,000 items: built by * (charged), then sort would build as many again.
    text = "(defvar many (* (with Guests vm 1.5) 200000))\n(defvar sorted (sort many))"
    e = err(text, host(), fleet(1), max_alloc=2_000_000)
    assert where(e) == ("t.policy", 2, 17)
    assert e.message.startswith("policy budget exceeded: more than")
    e = err(text, host(), fleet(1), max_size=150_000)
    assert e.message == "policy budget exceeded: list of 200,000 items, longer than the limit of 150,000"
    assert where(e)[1] == 1  # * stopped it first
    e = err("(defvar many (* (with Guests vm 1.5) 100000))\n(sort (+ many many))", host(), fleet(1),
            max_size=150_000)
    assert where(e)[1:] == (2, 8)  # + built the 200,000: stopped there, not in sort
    assert same(ev1("(nth (sort (* (with Guests vm 1.5) 200000)) 0)", host(), fleet(1)), 1.5)


def test_reading_a_long_list_again_and_again_stops_at_the_deadline():
    # Unbounded, this reads 10,000 x 100,000 items (about a minute).
    text = """
    (defvar many (* (with Guests vm 1) 100000))
    (with (* Guests 10000) g (sum many))
    """
    e = err(text, host(), fleet(1), max_seconds=0.2)
    assert e.message == "policy budget exceeded: evaluation took longer than 0.2 s"


# -- numbers -------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, value", [
    ("(round 2.5)", 3), ("(round -2.5)", -3), ("(round 2.4999)", 2), ("(round -2.6)", -3), ("(round 3)", 3),
    ("(round 0.49999999999999994)", 0), ("(round -0.5)", -1), ("(round 1e20)", 10 ** 20),
    ("(round 0.0)", 0), ("(floor 2.7)", 2), ("(floor -2.1)", -3), ("(floor 5)", 5),
    ("(ceil 2.1)", 3), ("(ceil -2.7)", -2), ("(ceil 5)", 5), ("(floor (/ 7 2))", 3),
    ("(clamp 5 1 10)", 5), ("(clamp -5 1 10)", 1), ("(clamp 50 1 10)", 10), ("(clamp 2.5 1 10)", 2.5),
    ("(clamp 5 5.0 10)", 5.0), ("(clamp 5 8 2)", 8),  # LO wins when LO > HI, as (max LO (min HI X))
])
def test_number_built_ins(text, value):
    assert same(ev1(text), value)


@pytest.mark.parametrize("call, message", [
    ("(round nil)", "round needs a number, got nil"),
    ('(floor "3")', "floor needs a number, got string"),
    ("(ceil Guests)", "ceil needs a number, got list"),
    ("(round (* 1e300 1e300))", "round of inf: not a finite number"),
    ("(floor (- (* 1e300 1e300) (* 1e300 1e300)))", "floor of nan: not a finite number"),
    ("(clamp nil 1 2)", "clamp: X is nil, not a number"),
    ('(clamp 1 "a" 2)', "clamp: LO is a string, not a number"),
    ("(clamp 1 2 Host)", "clamp: HI is a Host, not a number"),
])
def test_number_built_in_errors(call, message):
    e = err(f"\n {call}")
    assert (e.message, where(e)) == (message, ("t.policy", 2, 3))


@pytest.mark.parametrize("call, message", [
    ("(sum)", "sum takes 1 argument, got 0"),
    ("(nth Guests)", "nth takes 2 arguments, got 1"),
    ("(clamp 1 2)", "clamp takes 3 arguments, got 2"),
    ("(round 1 2)", "round takes 1 argument, got 2"),
])
def test_wrong_arity_of_a_new_built_in_fails_the_run_at_the_call(call, message):
    e = err(f"(defvar a 1)\n{call}")
    assert (e.message, where(e)) == (message, ("t.policy", 2, 1))


def test_a_policys_own_function_takes_the_place_of_a_new_built_in():
    # Written before the built-ins existed: doc/policies/ksm.policy defines clamp.
    assert ev1("(def sum (a b) (* a b)) (sum 3 4)") == 12
    assert ev1("(def round (x) 99) (round 1.2)") == 99
    assert ev1("(def clamp (value low high) (max low (min high value))) (clamp 20 1 10)") == 10
    # Before its def runs, the name is the built-in's.
    assert ev("(defvar before (round 1.6)) (def round (x) 0) (round 1.6)")[::2] == [2, 0]
    # Variables named like a built-in are variables (doc/policies/balloon.policy has floor).
    assert ev1("(defvar floor 3) (defvar count 4) (+ floor (count (with Guests g 1)))", host(), fleet(1, 2)) == 5


# -- properties ---------------------------------------------------------------------------------

numbers = st.one_of(st.none(), st.integers(-10 ** 12, 10 ** 12),
                    st.floats(-1e12, 1e12, allow_nan=False, allow_infinity=False))


@settings(max_examples=60, deadline=None)
@given(st.lists(numbers, max_size=12))
def test_list_built_ins_agree_with_python(values):
    present = [v for v in values if v is not None]
    h = host(variables={"xs": values})
    got = ev('(defvar xs (Host.GetVar "xs")) (sum xs) (count xs) (sort xs) (min-of xs) (max-of xs)', h)[1:]
    assert got[0] == sum(present) and got[1] == len(present) and got[2] == sorted(present)
    assert got[3] == (min(present) if present else None) and got[4] == (max(present) if present else None)


@settings(max_examples=80, deadline=None)
@given(st.floats(-1e15, 1e15, allow_nan=False), st.integers(-100, 100), st.integers(0, 100))
def test_rounding_and_clamp_properties(x, low, width):
    h = host(variables={"x": x, "lo": low, "hi": low + width})
    r, f, c, k = ev('(defvar x (Host.GetVar "x")) (defvar lo (Host.GetVar "lo")) (defvar hi (Host.GetVar "hi"))'
                    " (round x) (floor x) (ceil x) (clamp x lo hi)", h)[3:]
    assert type(r) is int and abs(r - x) <= 0.5 and f <= x <= c and c - f <= 1
    assert low <= k <= low + width and (k == x or k in (low, low + width))


@settings(max_examples=80, deadline=None)
@given(st.lists(st.sampled_from(["0", "1", "nil", '""', '"s"', "0.0", "2.5"]), min_size=1, max_size=6),
       st.sampled_from(["and", "or"]))
def test_and_or_give_pythons_value_and_evaluate_exactly_up_to_it(operands, form):
    text = f"""
    (defvar calls 0)
    (def note (v) {{ (set calls (+ calls 1)) v }})
    (defvar result ({form} {" ".join(f"(note {o})" for o in operands)}))
    calls
    """
    values = [ev1(o) for o in operands]
    expected, used = values[0], 1
    for v in values[1:]:
        if (form == "and" and not expected) or (form == "or" and expected):
            break
        expected, used = v, used + 1
    got = ev(text)
    assert same(got[-2], expected) and got[-1] == used
