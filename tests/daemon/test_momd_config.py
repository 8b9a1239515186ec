"""momd for real: every configuration error is exit status 2 and one line on
stderr, no traceback; the sample configurations of MOM and vdsm load."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.momd import POLICIES, REPO, Momd, idle_guests, run_momd, scenario_toml, write_config
from tests.support.shared_policies import SHARED_POLICIES

SHARED = SHARED_POLICIES
GOOD_POLICY = '(Host.Control "ksm_run" 0)\n'


def base_config(tmp_path: Path, main: str = "", sections: str = "") -> Path:
    """A valid sim configuration with extra [main] lines and extra sections."""
    scen = tmp_path / "scenario.toml"
    scen.write_text(scenario_toml(idle_guests(1)))
    cfg = tmp_path / "mom.conf"
    cfg.write_text(f"[main]\nhypervisor-interface: sim\ncontrollers: Balloon\n{main}\n"
                   f"[sim]\nscenario: {scen}\nspeed: 100\ntree-dir: {tmp_path / 'tree'}\n{sections}\n")
    return cfg


def assert_one_line_error(proc, *needles: str) -> str:
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    # Warnings (e.g. "no policy configured") may come first; the error is one line.
    lines = [line for line in proc.stderr.splitlines() if not line.startswith("momd: warning: ")]
    assert len(lines) == 1, proc.stderr
    assert proc.stdout == ""
    line = lines[0]
    assert line.startswith("momd: ")
    for needle in needles:
        assert needle in line, line
    return line


CASES = {
    "unknown interface": ("hypervisor-interface: xen\n", "",
                          ["[main] hypervisor-interface", "unknown hypervisor interface 'xen'"]),
    "unknown collector": ("", "[host]\ncollectors: HostMemory, HostTeleport\n",
                          ["[host] collectors", "unknown collector 'HostTeleport'"]),
    "unknown controller": ("controllers: Balloon, Turbo\n", "", ["[main] controllers", "unknown controller 'Turbo'"]),
    "non-numeric interval": ("policy-engine-interval: often\n", "",
                             ["[main] policy-engine-interval", "expected a number, got 'often'"]),
}


@pytest.mark.parametrize("case", list(CASES))
def test_config_error_exit_2_one_line(tmp_path: Path, case: str) -> None:
    main, sections, needles = CASES[case]
    # A second [main] key would be a duplicate: replace the base one when it is the one at fault.
    cfg = base_config(tmp_path, sections=sections)
    text = cfg.read_text()
    if main:
        key = main.split(":")[0]
        lines = [line for line in text.splitlines() if not line.startswith(key + ":")]
        lines.insert(1, main.rstrip("\n"))
        text = "\n".join(lines) + "\n"
    cfg.write_text(text)
    line = assert_one_line_error(run_momd(["-c", str(cfg)]), *needles)
    assert str(cfg) in line
    # --check says the same.
    assert assert_one_line_error(run_momd(["--check", "-c", str(cfg)])) == line


def test_both_policy_and_policy_dir(tmp_path: Path) -> None:
    policy = tmp_path / "p.policy"
    policy.write_text(GOOD_POLICY)
    cfg = base_config(tmp_path, main=f"policy: {policy}\npolicy-dir: {POLICIES}\n")
    assert_one_line_error(run_momd(["-c", str(cfg)]), "only one of policy and policy-dir")


def test_unreadable_policy(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.policy"
    cfg = base_config(tmp_path, main=f"policy: {missing}\n")
    assert_one_line_error(run_momd(["-c", str(cfg)]), str(missing), "No such file")
    # A directory where a policy file should be (root can read any file, so not chmod).
    cfg = base_config(tmp_path, main=f"policy: {tmp_path}\n")
    assert_one_line_error(run_momd(["-c", str(cfg)]), "is a directory")
    # The same through -r on the command line.
    assert_one_line_error(run_momd(["-c", str(base_config(tmp_path)), "-r", str(missing)]), str(missing))


@pytest.mark.parametrize("where", ["policy", "policy-dir"])
def test_policy_that_does_not_parse(tmp_path: Path, where: str) -> None:
    pdir = tmp_path / "pol"
    pdir.mkdir()
    (pdir / "10-good.policy").write_text(GOOD_POLICY)
    bad = pdir / "20-bad.policy"
    bad.write_text("# broken\n(defvar a 1)\n(defvar b (+ a 2)\n")  # '(' at 3:1 never closed
    main = f"policy: {bad}\n" if where == "policy" else f"policy-dir: {pdir}\n"
    cfg = base_config(tmp_path, main=main)
    line = assert_one_line_error(run_momd(["-c", str(cfg)]), f"{bad}:3:1")
    assert assert_one_line_error(run_momd(["--check", "-c", str(cfg)])) == line


def test_missing_config_file(tmp_path: Path) -> None:
    missing = tmp_path / "absent.conf"
    assert_one_line_error(run_momd(["-c", str(missing)]), str(missing), "No such file")


def test_libvirt_without_its_binding_is_reported(tmp_path: Path) -> None:
    """Without libvirt-python (the optional extra), momd says so in one line and exits 2."""
    cfg = base_config(tmp_path)
    cfg.write_text(cfg.read_text().replace("hypervisor-interface: sim", "hypervisor-interface: libvirt"))
    # sys.modules["libvirt"] = None makes "import libvirt" fail as if the package were absent.
    runner = ("import sys; sys.modules['libvirt'] = None; from mom.cli.momd import main; "
              "sys.exit(main(sys.argv[1:]))")
    for args in (["-c", str(cfg)], ["--check", "-c", str(cfg)]):
        proc = subprocess.run([sys.executable, "-c", runner, *args], cwd=REPO, capture_output=True, text=True,
                              timeout=30, stdin=subprocess.DEVNULL)
        line = assert_one_line_error(proc, "hypervisor-interface libvirt needs libvirt-python", "mom-kvm[libvirt]")
        assert "not built" not in line


def test_unknown_interface_name_from_code_is_reported() -> None:
    """Below the configuration (which already rejects unknown names) the registry says so too."""
    from mom.hypervisors import interface_class
    from mom.hypervisors.base import InterfaceUnavailable
    with pytest.raises(InterfaceUnavailable, match="unknown hypervisor-interface 'xen'"):
        interface_class("xen")


def test_good_config_checks_and_runs(tmp_path: Path) -> None:
    """The base configuration is good: the error cases above fail for their own reason."""
    policy = tmp_path / "p.policy"
    policy.write_text(GOOD_POLICY)
    cfg = base_config(tmp_path, main=f"policy: {policy}\n")
    proc = run_momd(["--check", "-c", str(cfg)])
    assert proc.returncode == 0 and "configuration and policy are good" in proc.stdout, proc.stderr


# --- the sample configurations ---------------------------------------------------------------

needs_shared = pytest.mark.skipif(not SHARED.is_dir(), reason=f"{SHARED} is not available")


def sim_copy(text: str, interface: str) -> str:
    """The same configuration on the simulated host (to check everything else loads)."""
    assert f"hypervisor-interface: {interface}" in text
    return text.replace(f"hypervisor-interface: {interface}", "hypervisor-interface: sim")


@needs_shared
@pytest.mark.parametrize("name", ["mom-balloon.conf", "mom-balloon+ksm.conf"])
def test_mom_sample_config_loads(tmp_path: Path, name: str) -> None:
    conf = SHARED / "mom-doc" / name
    # The samples name no policy (the original passes one with -r): loaded, with a loud warning.
    def expected(path: Path) -> str:
        return (f"momd: warning: {path}:114: [Collector: GuestNetworkDaemon]: no collector 'GuestNetworkDaemon' "
                "here; its settings are ignored\n"
                "momd: warning: no policy configured ([main] policy or policy-dir): "
                "momd will collect statistics but control nothing\n")
    proc = run_momd(["--check", "-c", str(conf)])  # libvirt: --check does not connect
    assert proc.returncode == 0 and proc.stderr == expected(conf), proc.stderr
    sim = tmp_path / name
    sim.write_text(sim_copy(conf.read_text(), "libvirt"))
    proc = run_momd(["--check", "-c", str(sim)])
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == expected(sim)


@needs_shared
def test_mom_sample_rules_load(tmp_path: Path) -> None:
    sim = tmp_path / "mom.conf"
    sim.write_text(sim_copy((SHARED / "mom-doc" / "mom-balloon+ksm.conf").read_text(), "libvirt"))
    rules = sorted((SHARED / "mom-doc").glob("*.rules"))
    assert rules
    for r in rules:
        proc = run_momd(["--check", "-c", str(sim), "-r", str(r)])
        if r.name == "guest-specific.rules":
            # It calls balloon.rules' change_big_enough: alone it would fail every tick, so it is refused...
            assert proc.returncode == 2
            errors = [line for line in proc.stderr.splitlines() if not line.startswith("momd: warning: ")]
            assert errors[0].startswith(f"momd: policy error: {r}:39:14: undefined function 'change_big_enough'")
            continue
        assert proc.returncode == 0, (r.name, proc.stderr)
    # ... and accepted after balloon.rules, as it is meant to run.
    both = tmp_path / "policies"
    both.mkdir()
    shutil.copy(SHARED / "mom-doc" / "balloon.rules", both / "10-balloon.policy")
    shutil.copy(SHARED / "mom-doc" / "guest-specific.rules", both / "20-guest-specific.policy")
    proc = run_momd(["--check", "-c", str(sim), "-P", str(both)])
    assert proc.returncode == 0, proc.stderr


@needs_shared
def test_vdsm_config_loads(tmp_path: Path) -> None:
    confdir = tmp_path / "etc"
    momd_dir = confdir / "mom.d"
    momd_dir.mkdir(parents=True)
    policies = sorted((SHARED / "vdsm").glob("*.policy"))
    assert policies
    for p in policies:
        shutil.copy(p, momd_dir / p.name)
    logdir = tmp_path / "log"
    logdir.mkdir()
    text = (SHARED / "vdsm" / "mom.conf.in").read_text()
    text = text.replace("@CONFDIR@", str(confdir)).replace("@VDSMLOGDIR@", str(logdir))
    assert "@" not in "".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    conf = tmp_path / "mom.conf"
    conf.write_text(text)
    # On this machine vdsm is not installed: --check names what a start would trip on
    # (vdsm's socket directory and certificates), one line each, and nothing about the policies.
    proc = run_momd(["--check", "-c", str(conf)])  # vdsmjsonrpcbulk: --check does not connect
    assert proc.returncode == 2
    assert [line for line in proc.stderr.splitlines() if not line.startswith("momd: warning: ")] == [
        "momd: [main] rpc-port: cannot create the socket: /var/run/vdsm: directory does not exist",
        "momd: [vdsm] ca-cert-file /etc/pki/vdsm/certs/cacert.pem: No such file or directory",
    ], proc.stderr
    sim = tmp_path / "mom-sim.conf"
    text = text.replace("rpc-port: /var/run/vdsm/mom-vdsm.sock", f"rpc-port: {tmp_path / 'mom-vdsm.sock'}")
    sim.write_text(sim_copy(text, "vdsmjsonrpcbulk"))
    proc = run_momd(["--check", "-c", str(sim)])
    assert proc.returncode == 0, proc.stderr
    # vdsm's set passes; the checker may only warn (e.g. a function relying on dynamic scope).
    assert all(line.startswith("momd: warning: ") for line in proc.stderr.splitlines()), proc.stderr


@needs_shared
def test_vdsm_policies_run_in_the_daemon(tmp_path: Path) -> None:
    """vdsm's policy set runs on the simulated host: ticks succeed with the collectors vdsm configures."""
    pdir = tmp_path / "mom.d"
    pdir.mkdir()
    for p in sorted((SHARED / "vdsm").glob("*.policy")):
        shutil.copy(p, pdir / p.name)
    cfg = write_config(tmp_path, scenario=scenario_toml(idle_guests(2)), policy_dir=str(pdir),
                       controllers="Balloon, KSM, CpuTune, IoTune", host_collectors="HostMemory, HostKSM, HostCpu",
                       guest_collectors="GuestMemoryOptional, GuestBalloonOptional, GuestCpuTune, GuestIoTuneOptional")
    m = Momd(cfg)
    try:
        records = m.wait_ticks(5)
        assert all(r["ok"] for r in records), [r["error"] for r in records]
        assert m.stop()[0] == 0
    finally:
        m.close()
