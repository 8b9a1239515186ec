"""Helpers shared by the controllers (not a controller itself)."""

from __future__ import annotations

from typing import Any, Callable

from mom.controllers.base import Action


def as_int(value: Any) -> int:
    """A control value as an int (policies may produce floats); raises ValueError."""
    if isinstance(value, bool):
        raise ValueError(f"not a number: {value!r}")
    try:
        return int(value)
    except (TypeError, ValueError, OverflowError):
        raise ValueError(f"not a number: {value!r}") from None


def attempt(call: Callable[[], None]) -> str | None:
    """Run one hypervisor call; return None on success or the error text.

    Any exception counts, not only HypervisorError: a controller must never let
    one guest's failure escape apply() and stop the others.
    """
    try:
        call()
    except Exception as e:  # noqa: BLE001 - see docstring
        text = str(e) or type(e).__name__
        return text
    return None


def action(controller: str, target: str, control: str, old: Any, new: Any, time: float,
           error: str | None = None, note: str | None = None) -> Action:
    """An applied Action, or a refused one when error is set."""
    return Action(controller=controller, target=target, control=control, old=old, new=new,
                  applied=error is None, reason=error if error is not None else note, time=time)
