"""Helpers shared by the controllers (not a controller itself)."""

from __future__ import annotations

from typing import Any

from mom.core.actions import Action


def as_int(value: Any) -> int:
    """A control value as an int (policies may produce floats); raises ValueError."""
    if isinstance(value, bool):
        raise ValueError(f"not a number: {value!r}")
    try:
        return int(value)
    except (TypeError, ValueError, OverflowError):
        raise ValueError(f"not a number: {value!r}") from None


def refused(controller: str, target: str, control: str, old: Any, new: Any, time: float, reason: str) -> Action:
    """A control refused while planning (a value the controller cannot send)."""
    return Action(controller=controller, target=target, control=control, old=old, new=new,
                  applied=False, reason=reason, time=time)
