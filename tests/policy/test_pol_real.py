"""The real policies (vdsm's set and MOM's documented samples) load and run on generated snapshots.

They are read from the workspace's shared/policies (tests/support/shared_policies.py) at test
time; nothing of them is copied here.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from mom.policy.compiler import Machine
from mom.policy.errors import PolicyError, Source
from mom.policy.generate import generate_snapshot
from mom.policy.policy import PolicySet, compile_policy, read_policy_paths
from tests.support.shared_policies import SHARED_POLICIES

SHARED = SHARED_POLICIES
VDSM = SHARED / "vdsm"
MOM_DOC = SHARED / "mom-doc"

pytestmark = pytest.mark.skipif(not (VDSM.is_dir() and MOM_DOC.is_dir()),
                                reason=f"the real policies are not available under {SHARED}")

GUEST_COUNTS = (0, 1, 7, 25)
PARAMETERS = "(set balloonEnabled True)\n(set ksmEnabled True)\n"


def source(path: Path) -> Source:
    return Source(str(path), path.read_text())


def vdsm_files() -> list[str]:
    return sorted(p.name for p in VDSM.glob("*.policy")) if VDSM.is_dir() else []


def rules_files() -> list[str]:
    return sorted(p.name for p in MOM_DOC.glob("*.rules")) if MOM_DOC.is_dir() else []


def alone(path: Path) -> list[Source]:
    """The file with what it needs before it: vdsm's files need 00-defines' constants,
    guest-specific and balloon-qos rules extend balloon.rules."""
    if path.parent == VDSM and path.name != "00-defines.policy":
        return [source(VDSM / "00-defines.policy"), source(path)]
    if path.name in ("guest-specific.rules", "balloon-qos.rules"):
        return [source(MOM_DOC / "balloon.rules"), source(path)]
    return [source(path)]


def latest(snap, i, field):
    return snap.guests[i].statistics[-1][field]


def test_the_expected_files_are_there():
    assert {"00-defines.policy", "02-balloon.policy", "03-ksm.policy", "04-cputune.policy",
            "05-iotune.policy"} <= set(vdsm_files())
    assert {"balloon.rules", "ksm.rules", "guest-specific.rules", "balloon-qos.rules"} <= set(rules_files())


@pytest.mark.parametrize("pressure", [False, True])
@pytest.mark.parametrize("name", vdsm_files() + rules_files())
def test_each_file_runs(name, pressure):
    path = (VDSM if name.endswith(".policy") else MOM_DOC) / name
    policy = compile_policy(alone(path))
    for n in GUEST_COUNTS:
        d = policy.run(generate_snapshot(n, pressure=pressure, seed=n))
        assert d.ok, d.error


@pytest.mark.parametrize("pressure", [False, True])
def test_vdsm_directory_with_parameters_like_vdsm(pressure):
    ps = PolicySet()
    ps.load_paths(policy_dir=str(VDSM))
    ps.set("01-parameters", PARAMETERS)
    assert ps.names()[:3] == ["00-defines", "01-parameters", "02-balloon"]
    for n in GUEST_COUNTS:
        snap = generate_snapshot(n, pressure=pressure, seed=100 + n)
        d = ps.run(snap)
        assert d.ok, d.error
        targets = {name: c["balloon_target"] for name, c in d.guest_controls.items() if "balloon_target" in c}
        names = [g.properties["name"] for g in snap.guests]
        for i, name in enumerate(names):
            if name in targets:
                cur = latest(snap, i, "balloon_cur")
                if pressure:
                    assert targets[name] < cur, (name, targets[name], cur)
                else:
                    assert targets[name] >= cur, (name, targets[name], cur)
        if pressure:
            assert d.host_controls["ksm_run"] == 1
            assert 64 <= d.host_controls["ksm_pages_to_scan"] <= 1250
            if n >= 7:
                assert targets, "under pressure some guests must be shrunk"
        else:
            assert d.host_controls["ksm_run"] == 0
        # cputune: guests with a CPU limit get a quota, the others are reset
        for i, name in enumerate(names):
            limit = latest(snap, i, "vcpu_user_limit")
            controls = d.guest_controls.get(name, {})
            if limit >= 100:
                assert controls["vcpu_quota"] == -1 and controls["vcpu_period"] == 100000
            else:
                assert controls["vcpu_quota"] > 0
        # iotune: every changed disk is set to its maximum
        for i, name in enumerate(names):
            for entry in d.guest_controls.get(name, {}).get("io_tune", []):
                assert entry["current"] == entry["maximum"]
            (tune,) = latest(snap, i, "io_tune")
            if tune["current"] != tune["maximum"]:
                assert d.guest_controls[name]["io_tune"][0]["name"] == tune["name"]


def test_vdsm_balloon_disabled_only_grows():
    ps = PolicySet()
    ps.load_paths(policy_dir=str(VDSM))  # 00-defines: balloonEnabled 0
    snap = generate_snapshot(25, pressure=True, seed=3)
    d = ps.run(snap)
    assert d.ok, d.error
    for i, g in enumerate(snap.guests):
        c = d.guest_controls.get(g.properties["name"], {})
        if "balloon_target" in c:
            assert c["balloon_target"] >= latest(snap, i, "balloon_cur")


def test_vdsm_parameters_can_be_replaced_and_a_bad_one_is_rejected():
    ps = PolicySet()
    ps.load_paths(policy_dir=str(VDSM))
    ps.set("01-parameters", PARAMETERS)
    before = ps.text()
    with pytest.raises(PolicyError):
        ps.set("01-parameters", "(set balloonEnabled True")
    assert ps.text() == before
    assert ps.run(generate_snapshot(3, pressure=True)).ok


def test_vdsm_directory_via_read_policy_paths():
    sources = read_policy_paths([str(VDSM)])
    assert [Path(s.name).name for s in sources] == vdsm_files()
    p = compile_policy(sources)
    for pressure in (False, True):
        assert p.run(generate_snapshot(5, pressure=pressure)).ok


@pytest.mark.parametrize("pressure", [False, True])
def test_mom_doc_balloon_rules_decisions(pressure):
    p = compile_policy([source(MOM_DOC / "balloon.rules")])
    snap = generate_snapshot(25, pressure=pressure, seed=11)
    d = p.run(snap)
    assert d.ok, d.error
    targets = 0
    for i, g in enumerate(snap.guests):
        c = d.guest_controls.get(g.properties["name"], {})
        if "balloon_target" in c:
            targets += 1
            cur = latest(snap, i, "balloon_cur")
            assert c["balloon_target"] < cur if pressure else c["balloon_target"] >= cur
    if pressure:
        assert targets > 0


@pytest.mark.parametrize("pressure", [False, True])
def test_mom_doc_ksm_rules_decisions(pressure):
    d = compile_policy([source(MOM_DOC / "ksm.rules")]).run(generate_snapshot(4, pressure=pressure))
    assert d.ok, d.error
    assert d.host_controls["ksm_run"] == (1 if pressure else 0)


def test_all_mom_doc_rules_together():
    sources = [source(MOM_DOC / n) for n in ("balloon.rules", "guest-specific.rules", "balloon-qos.rules",
                                              "ksm.rules")]
    p = compile_policy(sources)
    for n in GUEST_COUNTS:
        for pressure in (False, True):
            assert p.run(generate_snapshot(n, pressure=pressure, seed=n)).ok


# -- validation: the real policies pass every check the daemon makes ------------------------------

def conf_checks(conf: Path, trial=None):
    """The checks a daemon with this configuration makes: its collectors' fields, its controllers."""
    import configparser

    from .util import registry_checks

    parser = configparser.ConfigParser(interpolation=None)
    parser.read_string(conf.read_text())

    def names(section: str, key: str) -> list[str]:
        return [n.strip() for n in parser.get(section, key).split(",") if n.strip()]
    return registry_checks(controllers=names("main", "controllers"),
                           collectors=names("host", "collectors") + names("guest", "collectors"),
                           **({"trial_snapshot": trial} if trial else {}))


@pytest.mark.parametrize("pressure", [False, True])
def test_vdsm_set_passes_validation_as_vdsm_loads_it(pressure):
    trial = generate_snapshot(25, pressure=pressure, seed=5)
    ps = PolicySet(checks=conf_checks(VDSM / "mom.conf.in", trial=lambda: trial))
    warnings = ps.load_paths(policy_dir=str(VDSM))
    assert [(Path(w.pos.source.name).name, w.severity) for w in warnings] == [("02-balloon.policy", "warning")]
    for params in (PARAMETERS, "(set ksmEnabled False)\n(set balloonEnabled False)\n"):
        warnings = ps.set("01-parameters", params)
        assert [w.message for w in warnings] == [
            "'guest' is not defined in function guest_qos: it must be bound by every caller (dynamic scope)"]
    assert ps.names() == ["00-defines", "01-parameters", "02-balloon", "03-ksm", "04-cputune", "05-iotune"]


def test_vdsm_set_with_1000_guests_fits_the_default_budget():
    ps = PolicySet(checks=conf_checks(VDSM / "mom.conf.in"))
    ps.load_paths(policy_dir=str(VDSM))
    ps.set("01-parameters", PARAMETERS)
    budget = ps.budget
    for pressure in (False, True):
        machine = Machine(budget)
        d = ps.compiled.run(generate_snapshot(1000, pressure=pressure), machine)
        assert d.ok, d.error
    assert machine.steps < budget.max_steps / 50, machine.steps
    assert machine.alloc < budget.max_alloc / 50, machine.alloc


def test_mom_doc_rules_pass_validation_with_their_sample_config():
    checks = conf_checks(MOM_DOC / "mom-balloon+ksm.conf")
    for names in (["balloon.rules"], ["ksm.rules"], ["balloon.rules", "guest-specific.rules"],
                  ["balloon.rules", "balloon-qos.rules"]):
        texts = {f"{i:02d}": (MOM_DOC / n).read_text() for i, n in enumerate(names)}
        ps = PolicySet(checks=checks)
        ps.replace_all(texts)
        assert ps.names() == sorted(texts)
