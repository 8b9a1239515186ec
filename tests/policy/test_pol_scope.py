"""Dynamic scoping: defvar, set/setq, def/defun, let, with; what opens a scope and what is restored."""

from __future__ import annotations

import pytest

from .util import err, ev, ev1, guest, host, where


def test_function_sees_its_callers_variables():
    text = """
    (def show () y)
    (def caller (y) (show))
    (caller 5)
    """
    assert ev1(text) == 5
    e = err(text + "(show)")
    assert "undefined variable 'y'" in e.message and where(e)[1:] == (2, 18)


def test_vdsm_guest_qos_pattern_reads_guest_from_the_enclosing_with():
    # the parameter is misspelt 'quest'; the body reads 'guest', bound by the caller's with
    text = """
    (def guest_qos (quest)
      (if (< guest.balloon_cur guest.balloon_min)
          (guest.Control "balloon_target" guest.balloon_min) 0))
    (with Guests guest (guest_qos guest))
    """
    low = guest("low", [{"balloon_cur": 100, "balloon_min": 200}])
    ok = guest("ok", [{"balloon_cur": 300, "balloon_min": 200}])
    assert ev1(text, host(), [low, ok]) == [None, 0]
    assert low.controls == {"balloon_target": 200} and ok.controls == {}


def test_deeper_callers_are_visible_too():
    text = """
    (def c () (+ a b))
    (def b_ (b) (c))
    (def a_ (a) (b_ 20))
    (a_ 1)
    """
    assert ev1(text) == 21


def test_if_and_blocks_do_not_open_a_scope():
    assert ev("(if 1 (defvar a 1) 0) a") == [1, 1]
    assert ev("{ (defvar b 2) } b") == [2, 2]
    text = """
    (def f () { (if 1 { (defvar v 3) } 0) (+ v 1) })
    (f)
    """
    assert ev1(text) == 4
    assert "undefined variable 'v'" in err(text + " v").message


def test_a_function_call_opens_a_scope():
    e = err("(def f () (defvar inner 1)) (f) inner")
    assert "undefined variable 'inner'" in e.message and where(e)[1:] == (1, 33)
    assert "undefined variable 'p'" in err("(def f (p) p) (f 1) p").message


def test_let_opens_a_scope():
    assert ev("(defvar x 1) (let ((x 2)) x) x") == [1, 2, 1]
    assert ev1("(let ((a 1) (b 2)) (defvar c 3) (+ a (+ b c)))") == 6
    assert "undefined variable 'c'" in err("(let ((a 1)) (defvar c 3) a) c").message
    assert "undefined variable 'a'" in err("(let ((a 1)) a) a").message


def test_let_body_value_is_the_last_expression():
    assert ev1("(let ((a 1)) 10 20 (+ a 30))") == 31


def test_each_with_iteration_opens_a_scope():
    gs = [guest("a"), guest("b"), guest("c")]
    # a fresh scope per iteration: defvar binds anew each time
    assert ev1('(with Guests g { (defvar n (g.Prop "name")) n })', host(), gs) == ["a", "b", "c"]
    e = err("(with Guests g (defvar tmp 1)) tmp", host(), gs)
    assert "undefined variable 'tmp'" in e.message
    # the loop variable is restored after the loop
    assert ev("(defvar g 7) (with Guests g 1) g", host(), gs) == [7, [1, 1, 1], 7]
    assert "undefined variable 'g'" in err("(with Guests g 1) g", host(), gs).message


def test_with_iteration_sees_outer_variables_and_can_set_them():
    gs = [guest("a"), guest("b"), guest("c")]
    assert ev1("(defvar total 0) (with Guests g (set total (+ total 1))) total", host(), gs) == 3


def test_arguments_are_bound_one_by_one_in_the_new_scope():
    assert ev1("(def f (a b) b) (f 3 (+ a 1))") == 4
    assert ev1("(defvar a 100) (def f (a b) b) (f 3 (+ a 1))") == 4
    assert ev1("(defvar a 100) (def f (a b) (+ a b)) (f 3 a)") == 6
    # the arguments are evaluated before the parameter exists in the caller's view after the call
    assert ev("(defvar a 100) (def f (a b) b) (f 3 a) a")[-1] == 100


def test_defvar_creates_and_returns_the_value():
    assert ev("(defvar y 5) y") == [5, 5]


def test_defvar_never_overwrites_in_the_current_scope():
    assert ev("(defvar x 1) (defvar x 2) x") == [1, 1, 1]


def test_defvar_of_existing_name_still_evaluates_its_value():
    assert ev("(defvar n 0) (defvar x 1) (defvar x (set n 9)) x n") == [0, 1, 1, 1, 9]
    h = host()
    assert ev('(defvar x 1) (defvar x (Host.Control "c" 5)) x', h) == [1, 1, 1]
    assert h.controls == {"c": 5}


def test_defvar_in_function_shadows_the_global_until_return():
    text = "(defvar x 1) (def f () { (defvar x 2) x }) (f) x"
    assert ev(text)[2:] == [2, 1]


def test_defvar_in_function_of_a_parameter_keeps_the_parameter():
    assert ev1("(def f (p) { (defvar p 99) p }) (f 1)") == 1


def test_defvar_in_a_loop_body_of_function_rebinds_per_call():
    assert ev("(def f (v) { (defvar local v) local }) (f 1) (f 2)")[1:] == [1, 2]


def test_set_changes_the_nearest_scope_with_the_name():
    text = "(defvar x 1) (def f () { (defvar x 2) (set x 3) x }) (f) x"
    assert ev(text)[2:] == [3, 1]


def test_set_in_a_function_of_a_global_is_visible_after():
    assert ev("(defvar x 1) (def f () (set x 2)) (f) x")[2:] == [2, 2]


def test_set_in_a_function_of_a_callers_local():
    text = """
    (def inner () (set v 2))
    (def outer () { (defvar v 1) (inner) v })
    (outer)
    """
    assert ev1(text) == 2
    assert "undefined variable 'v'" in err(text + " v").message


def test_set_of_a_parameter_is_local_to_the_call():
    assert ev("(defvar p 0) (def f (p) { (set p 5) p }) (f 1) p")[2:] == [5, 0]


def test_set_and_setq_return_the_value():
    assert ev("(defvar x 1) (set x 2) (setq x 3) x") == [1, 2, 3, 3]


@pytest.mark.parametrize("form", ["set", "setq"])
def test_set_of_an_unknown_name_is_an_error(form):
    e = err(f"(defvar a 1)\n  ({form} nope 2)")
    assert "undefined variable 'nope'" in e.message
    assert where(e)[1:] == (2, 5 + len(form))


def test_set_of_a_variable_that_went_out_of_scope_is_an_error():
    e = err("(def f () (defvar t 1)) (f) (set t 2)")
    assert "'t'" in e.message


def test_def_and_defun_define_global_functions():
    assert ev1("(def add (a b) (+ a b)) (add 2 3)") == 5
    assert ev1("(defun add (a b) (+ a b)) (add 2 3)") == 5
    assert ev1("(def k () 42) (k)") == 42


def test_def_inside_a_function_is_global_once_it_runs():
    assert ev1("(def mk () (def g () 42)) (mk) (g)") == 42
    e = err("(def mk () (def g () 42))\n(g)")
    assert "undefined function 'g'" in e.message and where(e)[1:] == (2, 1)


def test_calling_before_the_def_runs_is_an_error():
    e = err("(f)\n(def f () 1)")
    assert "undefined function 'f'" in e.message and where(e)[1:] == (1, 1)


def test_a_later_def_replaces_an_earlier_one_from_then_on():
    assert ev1("(def f () 1) (defvar a (f)) (def f () 2) (defvar b (f)) (+ (* a 10) b)") == 12


def test_def_in_an_untaken_branch_does_not_define():
    assert "undefined function 'f'" in err("(if 0 (def f () 1) 0) (f)").message


def test_recursion_and_dynamic_scoping():
    assert ev1("(def fact (n) (if (<= n 1) 1 (* n (fact (- n 1))))) (fact 10)") == 3628800
    assert ev1("(def fib (n) (if (< n 2) n (+ (fib (- n 1)) (fib (- n 2))))) (fib 15)") == 610


def test_scopes_are_restored_after_a_call_with_parameters_that_shadow():
    text = "(defvar a 1) (defvar b 2) (def f (a b) (* a b)) (f 10 20) (+ a b)"
    assert ev(text)[-2:] == [200, 3]


def test_host_and_guests_are_predefined():
    h, gs = host(), [guest("a")]
    values = ev("Host Guests", h, gs)
    assert values[0] is h and values[1] == gs
    assert ev1("(defvar Host 1) Host", h) is h  # already bound in the global scope: kept
