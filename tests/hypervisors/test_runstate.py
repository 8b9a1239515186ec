"""The shared run state: moves along the table only, listeners see each move."""

from __future__ import annotations

import pytest

from mom.hypervisors.runstate import TRANSITIONS, RunState, RunStateError, RunStateMachine


def test_a_connection_life_is_observed_move_by_move() -> None:
    machine = RunStateMachine("test")
    seen: list[tuple[RunState, RunState]] = []
    machine.listen(lambda old, new: seen.append((old, new)))
    for state in (RunState.CONNECTING, RunState.CONNECTED, RunState.DISCONNECTED,
                  RunState.CONNECTING, RunState.CONNECTED, RunState.CLOSED):
        machine.move(state)
    assert [new for _, new in seen] == [RunState.CONNECTING, RunState.CONNECTED, RunState.DISCONNECTED,
                                        RunState.CONNECTING, RunState.CONNECTED, RunState.CLOSED]
    assert seen[0][0] is RunState.IDLE and machine.state is RunState.CLOSED


@pytest.mark.parametrize("start", list(RunState))
def test_every_move_outside_the_table_is_refused_and_changes_nothing(start: RunState) -> None:
    for target in RunState:
        machine = RunStateMachine("test")
        machine.state = start
        if target in TRANSITIONS[start]:
            machine.move(target)
            assert machine.state is target
        else:
            with pytest.raises(RunStateError, match=f"test: no transition from {start.value} to {target.value}"):
                machine.move(target)
            assert machine.state is start


def test_closed_is_final() -> None:
    assert TRANSITIONS[RunState.CLOSED] == frozenset()
    assert all(RunState.CLOSED in TRANSITIONS[s] for s in RunState if s is not RunState.CLOSED)


def test_the_table_is_the_documented_life_of_a_connection() -> None:
    """Written out, so that a wrong entry in TRANSITIONS fails here (the other tests
    take their expectations from the table itself)."""
    idle, C, U, D, X = (RunState.IDLE, RunState.CONNECTING, RunState.CONNECTED, RunState.DISCONNECTED,
                        RunState.CLOSED)
    assert TRANSITIONS == {idle: {C, X}, C: {U, D, X}, U: {D, X}, D: {C, X}, X: set()}
