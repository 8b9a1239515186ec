"""The trace (``momctl explain``): each guest's variables are the values computed
for it; leaving a scope gives back the values it hid, which is not a binding."""

from __future__ import annotations

from mom.policy.trace import trace_run

from .util import compiled, snapshot

SNAP = snapshot(guests={"a": [{"x": 1}], "b": [{"x": 0}]})


def test_a_let_that_shadows_a_global_notes_the_guests_own_value():
    trace = trace_run(compiled("(defvar size 1) (with Guests g (let ((size (+ 4 g.x))) size))"), SNAP)
    assert trace.ok
    assert trace.host_variables == {"size": 1}
    assert trace.guest_variables == {"a": {"size": 5}, "b": {"size": 4}}


def test_a_parameter_that_shadows_a_global_notes_the_guests_own_value():
    trace = trace_run(compiled("(defvar size 1) (def f (g size) size) (with Guests g (f g (* 7 g.x)))"), SNAP)
    assert trace.guest_variables == {"a": {"size": 7}, "b": {"size": 0}}


def test_a_failed_run_shows_what_the_failing_guest_had_computed():
    trace = trace_run(compiled("(defvar size 1) (with Guests g (let ((size (+ 4 g.x))) (/ 1 g.x)))"), SNAP)
    assert not trace.ok and trace.error == "t.policy:1:57: division by zero"
    assert trace.guest_variables == {"a": {"size": 5}, "b": {"size": 4}}
    assert trace.host_variables == {"size": 1}
