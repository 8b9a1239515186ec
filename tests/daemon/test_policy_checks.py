"""The checks momd builds for policies from its collector and controller
registries (mom.daemon.policy_checks): plain name sets for mom.policy."""

from __future__ import annotations

import pytest

from mom.daemon.policy_checks import collector_fields, registry_checks
from mom.policy.errors import Source
from mom.policy.validate import check_policy


def test_fields_come_from_the_enabled_collectors_by_scope():
    checks = registry_checks(enabled_collectors=["HostMemory", "GuestBalloon"], extra_fields=["custom"])
    assert "mem_free" in checks.host_fields and "balloon_cur" not in checks.host_fields
    assert "balloon_cur" in checks.guest_fields and "ksm_pages_shared" not in checks.guest_fields
    assert "custom" in checks.host_fields and "custom" in checks.guest_fields
    assert collector_fields(["HostMemory"])[1] == frozenset()


def test_controls_name_the_controller_that_acts_on_them():
    checks = registry_checks(enabled_controllers=["Balloon"])
    assert checks.guest_controls["balloon_target"] == "Balloon"
    assert checks.host_controls["ksm_run"] == "KSM"
    assert checks.enabled_controllers == frozenset({"Balloon"})
    assert registry_checks().enabled_controllers is None  # all run


def test_the_trial_snapshot_has_exactly_the_collected_fields():
    checks = registry_checks(enabled_collectors=["HostMemory", "GuestBalloon"])
    snap = checks.trial_snapshot()
    assert set(snap.host.statistics[-1]) == checks.host_fields
    assert set(snap.guests[0].statistics[-1]) == checks.guest_fields


def test_a_policy_is_checked_against_the_names_given():
    checks = registry_checks(enabled_collectors=["HostMemory", "GuestBalloon"], enabled_controllers=["Balloon"])
    text = '(with Guests g (g.Control "balloon_target" g.balloon_cur)) (Host.Control "ksm_run" Host.ksm_run)'
    messages = [str(f) for f in check_policy([Source("t", text)], checks).findings]
    assert messages == ["t:1:74: warning: controller KSM is not enabled: ksm_run has no effect",
                        "t:1:84: error: no collector provides statistic 'ksm_run' for the host"]


def test_unknown_names_are_refused():
    with pytest.raises(ValueError, match="unknown controller Balon"):
        registry_checks(enabled_controllers=["Balon"])
    with pytest.raises(ValueError, match="unknown collector HostMem "):
        registry_checks(enabled_collectors=["HostMem"])
