"""Validation: every load path (PolicySet.set/replace_all/load_paths, check_policy)
parses, checks statically (variables, functions, arity, statistics, controls)
and runs a trial evaluation; an error refuses the policy and the old one stays."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace

import pytest

from mom.policy.errors import PolicyError, PolicyRejected, Source
from mom.policy.generate import UNKNOWN_FIELD_VALUE, trial_snapshot
from mom.policy.policy import PolicySet
from mom.policy.validate import check_policy, validate_policy
from tests.support.momd import REPO

from .util import registry_checks, snapshot

GOOD = '(with Guests g (g.Control "balloon_target" g.balloon_cur))\n'


def policy_set(**kwargs) -> PolicySet:
    ps = PolicySet(checks=registry_checks(**kwargs))
    ps.set("10-good", GOOD)
    return ps


def refused(ps: PolicySet, text: str, name: str = "50-new") -> PolicyRejected:
    before = ps.texts()
    with pytest.raises(PolicyRejected) as info:
        ps.set(name, text)
    assert ps.texts() == before, "a refused policy must leave the old one in force"
    d = ps.run(trial_snapshot())
    assert d.ok and d.guest_controls, "the old policy must still run"
    return info.value


# -- what the daemon accepted before and must refuse now ----------------------------------------

def test_set_of_an_undefined_variable_is_refused():
    e = refused(policy_set(), "(set ksmEnabled True)")
    assert str(e) == "50-new:1:6: set of undefined variable 'ksmEnabled'"
    assert [str(f) for f in e.errors] == ["50-new:1:6: error: set of undefined variable 'ksmEnabled'",
                                          "50-new:1:17: error: undefined variable 'True'"]


def test_an_undefined_function_is_refused():
    e = refused(policy_set(), "(frobnicate 1 2)")
    assert e.render() == "50-new:1:2: error: undefined function 'frobnicate'\n    (frobnicate 1 2)\n     ^"


def test_a_misspelt_function_gets_a_suggestion():
    e = refused(policy_set(), "(def shrink (g) 1)\n(with Guests g (shrnk g))")
    assert e.message == "undefined function 'shrnk' (did you mean 'shrink'?)"


def test_a_misspelt_control_is_refused_with_a_suggestion():
    e = refused(policy_set(), '(with Guests g (g.Control "balloon_targt" 1000))')
    assert str(e) == ("50-new:1:27: unknown control 'balloon_targt': no controller acts on it "
                      "(did you mean 'balloon_target'?)")
    assert e.render().splitlines()[1:] == ['    (with Guests g (g.Control "balloon_targt" 1000))',
                                           "                              ^"]


@pytest.mark.parametrize("text, message", [
    ('(Host.Control "balloon_target" 1)', "'balloon_target' is a guest control: no controller acts on it for the host"),
    ('(with Guests g (g.Control "ksm_run" 1))', "'ksm_run' is a host control: no controller acts on it for a guest"),
    ('(Host.Control "ksm_runn" 1)', "unknown control 'ksm_runn': no controller acts on it (did you mean 'ksm_run'?)"),
    ('(def f (vm) (vm.Control "vcpu_quotta" 1))', "unknown control 'vcpu_quotta': no controller acts on it "
                                                  "(did you mean 'vcpu_quota'?)"),
    ('(with Guests g (g.GetControl "balloon_targt"))', "unknown control 'balloon_targt': no controller acts on it "
                                                      "(did you mean 'balloon_target'?)"),
])
def test_control_names_are_checked_per_scope(text, message):
    assert refused(policy_set(), text).message == message


def test_a_control_of_a_controller_that_is_not_enabled_is_a_warning():
    ps = policy_set(controllers=["Balloon"])
    warnings = ps.set("20-ksm",
                      '(Host.Control "ksm_run" 1)\n(Host.Control "ksm_run" 0)\n(Host.Control "ksm_pages_to_scan" 64)')
    assert [str(w) for w in warnings] == [
        "20-ksm:1:15: warning: controller KSM is not enabled: ksm_run has no effect",
        "20-ksm:3:15: warning: controller KSM is not enabled: ksm_pages_to_scan has no effect"]
    assert ps.warnings == warnings and ps.names() == ["10-good", "20-ksm"]
    assert ps.run(trial_snapshot()).host_controls == {"ksm_run": 0, "ksm_pages_to_scan": 64}


def test_controls_with_computed_names_are_left_to_run_time():
    ps = policy_set()
    ps.set("20-computed", '(defvar name "balloon_target") (with Guests g (g.Control name 1))')


def test_statistics_the_configured_collectors_do_not_provide_are_refused():
    ps = policy_set(collectors=["HostMemory", "GuestMemory", "GuestBalloon"])
    e = refused(ps, "(defvar pages Host.ksm_pages_shared)")
    assert e.message == "no collector provides statistic 'ksm_pages_shared' for the host"
    e = refused(ps, "(with Guests g g.balloon_curr)")
    assert e.message == "no collector provides statistic 'balloon_curr' for a guest (did you mean 'balloon_cur'?)"
    ps.set("20-extra", '(defvar pages Host.mem_free)')  # HostMemory's


def test_extra_fields_are_known():
    ps = policy_set(extra_fields=["my_metric"])
    ps.set("20-mine", "(with Guests g (g.Control \"balloon_target\" (* 1000 g.my_metric)))")
    assert ps.run(trial_snapshot(None, None)).ok is False  # real snapshots lack it: it fails at run time ...
    d = ps.run(ps.checks.trial_snapshot())  # ... but the trial snapshot has it
    assert d.ok and {c["balloon_target"] for c in d.guest_controls.values()} == {1000 * UNKNOWN_FIELD_VALUE}


# -- the trial evaluation ------------------------------------------------------------------------

TRIAL_FAILS = """\
(def ratio (g)
    (/ g.balloon_cur (- g.balloon_max g.balloon_max)))
(with Guests guest
    (guest.Control "balloon_target" (ratio guest)))
"""


def test_a_policy_that_fails_its_trial_evaluation_is_refused_with_position_chain_and_guest():
    e = refused(policy_set(), TRIAL_FAILS)
    assert str(e) == "50-new:2:6: division by zero"
    assert e.render().splitlines() == [
        "50-new:2:6: error: division by zero",
        "        (/ g.balloon_cur (- g.balloon_max g.balloon_max)))",
        "         ^",
        "  in ratio, called at 50-new:4:37",
        "  where guest = guest vm0000 (with at 50-new:3:1)",
        "  (found by a trial evaluation)"]


def test_the_trial_runs_on_the_snapshot_the_checks_give():
    seen = []

    def newest():
        seen.append(1)
        return snapshot([{"mem_free": 0, "mem_available": 0}], {"vm1": [{"balloon_cur": 1}]})
    ps = PolicySet(checks=replace(registry_checks(), trial_snapshot=newest))
    ps.set("10-ok", GOOD)
    e = refused(ps, '(defvar free (/ Host.mem_free Host.mem_available))')  # fine on a real host, not on this one
    assert e.message == "division by zero" and e.note == "found by a trial evaluation"
    assert len(seen) == 2


def test_without_a_trial_snapshot_only_static_checks_run():
    ps = PolicySet(checks=replace(registry_checks(), trial_snapshot=None))
    ps.set("p", '(Host.Control "ksm_run" (/ 1 0))')
    assert ps.run(snapshot()).ok is False


def test_the_default_checks_are_the_language_ones():
    ps = PolicySet()
    ps.set("p", '(Host.Control "anything" 1) (defvar x Host.any_field)')  # no registry: not checked
    e = refused_plain(ps, "(frobnicate)")
    assert e.message == "undefined function 'frobnicate'"


def refused_plain(ps: PolicySet, text: str) -> PolicyError:
    before = ps.texts()
    with pytest.raises(PolicyError) as info:
        ps.set("x", text)
    assert ps.texts() == before
    return info.value


# -- every load path ------------------------------------------------------------------------------

def test_replace_all_and_load_paths_validate_too(tmp_path):
    ps = policy_set()
    with pytest.raises(PolicyRejected):
        ps.replace_all({"a": GOOD, "b": "(frobnicate)"})
    assert ps.names() == ["10-good"]
    d = tmp_path / "dir"
    d.mkdir()
    (d / "00-a.policy").write_text(GOOD)
    (d / "10-b.policy").write_text('(Host.Control "ksm_rn" 1)\n')
    with pytest.raises(PolicyRejected) as info:
        ps.load_paths(policy_dir=str(d))
    assert str(info.value).startswith(f"{d / '10-b.policy'}:1:15: unknown control 'ksm_rn'")
    assert ps.names() == ["10-good"]
    (d / "10-b.policy").write_text('(Host.Control "ksm_run" 1)\n')
    assert ps.load_paths(policy_dir=str(d)) == []
    assert ps.names() == ["00-a", "10-b"]


def test_deleting_a_policy_others_need_is_refused():
    ps = policy_set()
    ps.set("00-defines", "(defvar True 1)")
    ps.set("01-parameters", "(set True 1)")
    with pytest.raises(PolicyRejected) as info:
        ps.set("00-defines", None)
    assert info.value.message == "set of undefined variable 'True'"
    assert ps.names() == ["00-defines", "01-parameters", "10-good"]


def test_rejected_render_lists_every_error_and_str_is_the_first():
    e = refused(policy_set(), "(frobnicate)\n(+ 1 nope)\n(defvar ok 1")
    assert str(e) == "50-new:3:1: '(' is never closed"  # a parse error stops that source
    e = refused(policy_set(), "(frobnicate)\n(+ 1 nope)\n")
    assert str(e) == "50-new:1:2: undefined function 'frobnicate'"
    lines = e.render().splitlines()
    assert lines[0] == "50-new:1:2: error: undefined function 'frobnicate'"
    assert "50-new:2:6: error: undefined variable 'nope'" in lines
    many = refused(policy_set(), "".join(f"(f{i})\n" for i in range(15)))
    assert many.render().splitlines()[-1] == "... and 5 more errors"


def test_check_policy_reports_everything_and_never_raises():
    sources = [Source("a.policy", "(def f () free_var)\n(f)\n"), Source("b.policy", "(+ 1\n"),
               Source("c.policy", "(frobnicate)")]
    report = check_policy(sources, registry_checks())
    assert [str(f) for f in report.findings] == [
        "a.policy:1:11: warning: 'free_var' is not defined in function f: it must be bound by every caller "
        "(dynamic scope)",
        "b.policy:1:1: error: '(' is never closed",
        "c.policy:1:2: error: undefined function 'frobnicate'"]
    assert report.policy is None
    assert report.findings[0].render().splitlines()[1:] == ["    (def f () free_var)", "              ^"]


def test_validate_policy_returns_the_compiled_policy_and_warnings():
    valid = validate_policy([Source("a", "(def f () g) (defvar g 1) (f)")], registry_checks())
    assert valid.policy.evaluate()[-1] == 1 and [f.severity for f in valid.warnings] == []
    valid = validate_policy([Source("a", "(def f () g) (with Guests g (f))")], registry_checks())
    assert [f.message for f in valid.warnings] == [
        "'g' is not defined in function f: it must be bound by every caller (dynamic scope)"]


def test_the_policy_package_imports_no_registry():
    code = ("import sys, mom.policy.policy, mom.policy.validate, mom.policy.checker, mom.policy.generate;"
            "bad = [m for m in sys.modules if m.startswith(('mom.controllers', 'mom.collectors'))];"
            "print(bad); sys.exit(1 if bad else 0)")
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr


def test_no_snapshot_for_the_trial_is_a_warning_not_a_refusal():
    def broken():
        raise RuntimeError("engine stopped")
    ps = PolicySet(checks=replace(registry_checks(), trial_snapshot=broken))
    warnings = ps.set("p", GOOD)
    assert [str(w) for w in warnings] == ["warning: no trial evaluation: no snapshot to run it on: engine stopped"]
    assert ps.names() == ["p"]
