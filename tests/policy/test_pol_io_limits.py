"""The policy's IO setters apply core's one limit rule (mom.core.disks.io_limit):
a fraction, a negative number or a boolean is refused where the policy sets it,
with the words every interface uses, instead of being cut to an integer first."""

from __future__ import annotations

from typing import Any

import pytest

from mom.policy.runtime import IoTuneEntry, RuntimeFault
from tests.hypervisors.disk_cases import VALUE_CASES

from .util import compiled, snapshot

SETTERS = {"total_iops_sec": "setTotalIopsSec", "total_bytes_sec": "setTotalBytesSec"}


def vda() -> dict[str, Any]:
    limits = {"total_bytes_sec": 1000, "total_iops_sec": 10}
    return {"name": "vda", "path": "/img/vda.qcow2", "guaranteed": dict(limits), "maximum": dict(limits),
            "current": dict(limits)}


def set_limits(sent: dict[str, Any]) -> dict[str, Any]:
    """The entry's current limits after calling each key's setter with its value."""
    tune = IoTuneEntry(vda())
    for key, value in sent.items():
        getattr(tune, SETTERS[key])(value)
    return tune.fields["current"]


@pytest.mark.parametrize("sent, expected", [c for c in VALUE_CASES if set(c[0]) <= set(SETTERS)],
                         ids=lambda c: repr(c))
def test_the_setters_follow_the_disk_table(sent: dict[str, Any], expected: dict[str, int] | str) -> None:
    if isinstance(expected, str):
        with pytest.raises(RuntimeFault, match=expected):
            set_limits(sent)
        return
    current = set_limits(sent)
    for key, value in sent.items():
        if value is None:  # nil: the limit is left as it is (DiskLimits leaves it out)
            assert current[key] is None
        else:  # a number is set as core's rule reads it
            assert current[key] == expected[key] and type(current[key]) is int


def test_a_fraction_fails_the_run_at_the_setter() -> None:
    text = """(with Guests g (with g.io_tune tune
  (tune.setTotalIopsSec (* 0.5 3))))"""
    decisions = compiled(text).run(snapshot(None, {"vm1": [{"io_tune": [vda()]}]}))
    assert not decisions.ok
    message = str(decisions.error)
    assert "IO limit total_iops_sec of disk vda must be a whole number >= 0, not 1.5" in message
    assert decisions.guest_controls == {}


def test_a_whole_float_is_that_integer() -> None:
    text = "(with Guests g (with g.io_tune tune (tune.setTotalIopsSec (* 0.5 40))))"
    decisions = compiled(text).run(snapshot(None, {"vm1": [{"io_tune": [vda()]}]}))
    assert decisions.ok, decisions.error
    [entry] = decisions.guest_controls["vm1"]["io_tune"]
    assert entry["current"]["total_iops_sec"] == 20 and type(entry["current"]["total_iops_sec"]) is int
