"""Configuration defaults and the shipped sample configurations load as typed values."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from mom.daemon.config import RPC_DISABLED, Config, ConfigError, HostPort, TcpPort, UnixSocket, load_config
from tests.support.shared_policies import SHARED_POLICIES

SHARED = SHARED_POLICIES
MOM_DOC = SHARED / "mom-doc"
VDSM = SHARED / "vdsm"


def _sample(path: Path) -> Path:
    if not path.is_file():
        pytest.skip(f"sample configuration {path} not present on this machine")
    return path


def test_defaults_without_file() -> None:
    cfg = load_config(None)
    m = cfg.main
    assert (m.main_loop_interval, m.host_monitor_interval, m.guest_monitor_interval,
            m.guest_manager_interval, m.policy_engine_interval) == (5.0, 5.0, 5.0, 5.0, 10.0)
    assert m.sample_history_length == 10
    assert m.hypervisor_interface == "libvirt"
    assert m.libvirt_hypervisor_uri == ""
    assert m.controllers == ("Balloon",) == cfg.controllers
    assert m.plot_dir == "" and m.policy == "" and m.policy_dir == ""
    assert m.rpc == RPC_DISABLED
    assert (m.record_file, m.record_max_bytes, m.record_backup_count) == ("", 10485760, 3)
    assert m.metrics_address is None
    assert (m.proc_root, m.sys_root, m.hypervisor_call_timeout) == ("/proc", "/sys", 10.0)
    assert cfg.logging.log == "stdio" and cfg.logging.to_stdio
    assert cfg.logging.level == logging.INFO
    assert (cfg.logging.max_bytes, cfg.logging.backup_count) == (2097152, 5)
    assert cfg.host_collectors == ("HostMemory",)
    assert cfg.guest_collectors == ("GuestQemuProc", "GuestMemory")
    assert cfg.collector_settings == {}
    v = cfg.vdsm
    assert (v.pki_dir, v.host, v.port, v.request_timeout) == ("/etc/pki/vdsm", "127.0.0.1", 54321, 10.0)
    assert v.key_path == "/etc/pki/vdsm/keys/vdsmkey.pem"
    assert v.cert_path == "/etc/pki/vdsm/certs/vdsmcert.pem"
    assert v.ca_cert_path == "/etc/pki/vdsm/certs/cacert.pem"
    assert (cfg.sim.scenario, cfg.sim.seed, cfg.sim.speed, cfg.sim.tree_dir) == ("", None, 1.0, "")
    assert cfg.source == "" and cfg.warnings == ()


def test_default_config_equals_dataclass_defaults() -> None:
    # The raw-string defaults and the dataclass defaults must not drift apart.
    assert load_config(None) == Config()


def test_config_is_frozen() -> None:
    cfg = load_config(None)
    with pytest.raises(AttributeError):
        cfg.main.policy = "x"  # type: ignore[misc]


def test_empty_file_gives_defaults(tmp_path: Path) -> None:
    p = tmp_path / "mom.conf"
    p.write_text("")
    cfg = load_config(str(p))
    assert cfg.main == load_config(None).main
    assert cfg.source == str(p)


def test_sample_mom_balloon() -> None:
    path = _sample(MOM_DOC / "mom-balloon.conf")
    cfg = load_config(str(path))
    assert cfg.source == str(path)
    assert cfg.main.hypervisor_interface == "libvirt"
    assert cfg.main.controllers == ("Balloon",)
    assert cfg.main.policy_engine_interval == 10.0
    assert cfg.main.rpc == RPC_DISABLED
    assert cfg.main.plot_dir == "" and cfg.main.libvirt_hypervisor_uri == ""
    assert cfg.host_collectors == ("HostMemory",)
    assert cfg.guest_collectors == ("GuestQemuProc", "GuestMemory", "GuestBalloon")
    assert cfg.logging.level == logging.INFO
    # '%' kept verbatim: no interpolation.
    assert cfg.collector_settings["GuestQemuAgent"] == {
        "socket_path": "/var/lib/libvirt/qemu", "socket_name_template": "%(name)s.agent",
    }
    assert cfg.collector_settings["GuestNetworkDaemon"] == {}
    # The original's network collector is not here: said once, not an error (the file works unchanged).
    assert cfg.warnings == (f"{MOM_DOC / 'mom-balloon.conf'}:114: [Collector: GuestNetworkDaemon]: "
                            "no collector 'GuestNetworkDaemon' here; its settings are ignored",)


def test_sample_mom_balloon_ksm() -> None:
    cfg = load_config(str(_sample(MOM_DOC / "mom-balloon+ksm.conf")))
    assert cfg.main.controllers == ("Balloon", "KSM")
    assert cfg.host_collectors == ("HostMemory", "HostKSM")
    assert cfg.guest_collectors == ("GuestQemuProc", "GuestMemory", "GuestBalloon")
    assert set(cfg.collector_settings) == {"GuestQemuAgent", "GuestNetworkDaemon"}


@pytest.fixture
def vdsm_conf(tmp_path: Path) -> Path:
    text = _sample(VDSM / "mom.conf.in").read_text()
    confdir = tmp_path / "etc"
    (confdir / "mom.d").mkdir(parents=True)
    logdir = tmp_path / "log"
    logdir.mkdir()
    out = tmp_path / "mom.conf"
    out.write_text(text.replace("@CONFDIR@", str(confdir)).replace("@VDSMLOGDIR@", str(logdir)))
    return out


def test_sample_vdsm(vdsm_conf: Path, tmp_path: Path) -> None:
    cfg = load_config(str(vdsm_conf))
    m = cfg.main
    assert m.hypervisor_interface == "vdsm"  # from vdsmjsonrpcbulk
    assert m.rpc == UnixSocket("/var/run/vdsm/mom-vdsm.sock")
    assert m.policy_dir == str(tmp_path / "etc" / "mom.d") and m.policy == ""
    assert m.controllers == ("Balloon", "KSM", "CpuTune", "IoTune")
    assert (m.main_loop_interval, m.policy_engine_interval) == (15.0, 15.0)
    assert cfg.host_collectors == ("HostMemory", "HostKSM", "HostCpu")
    assert cfg.guest_collectors == (
        "GuestMemoryOptional", "GuestBalloonOptional", "GuestCpuTune", "GuestIoTuneOptional",
    )
    assert cfg.logging.log == str(tmp_path / "log" / "mom.log") and not cfg.logging.to_stdio
    assert (cfg.logging.max_bytes, cfg.logging.backup_count) == (2097152, 5)
    # [vdsm] uses '=' separators.
    v = cfg.vdsm
    assert (v.pki_dir, v.key_file, v.cert_file, v.ca_cert_file) == (
        "/etc/pki/vdsm", "keys/vdsmkey.pem", "certs/vdsmcert.pem", "certs/cacert.pem")
    assert (v.host, v.port, v.request_timeout) == ("127.0.0.1", 54321, 10.0)
    assert cfg.warnings == ()


def test_all_new_keys_parsed(tmp_path: Path) -> None:
    scenario = tmp_path / "s.json"
    scenario.write_text("{}")
    p = tmp_path / "mom.conf"
    p.write_text(
        "[main]\n"
        "main-loop-interval = 0.5\n"
        "sample-history-length: 3\n"
        "hypervisor-interface: SIM\n"
        "rpc-port: 8888\n"
        "record-file: /tmp/rec.jsonl\n"
        "record-max-bytes: 1000\n"
        "record-backup-count: 0\n"
        "metrics-address: 0.0.0.0:9100\n"
        "proc-root: /x/proc\n"
        "sys-root: /x/sys\n"
        "hypervisor-call-timeout: 2.5\n"
        "controllers:  Balloon ,KSM,, \n"
        "[logging]\nverbosity: 5\nmax-bytes: 0\n"
        "[host]\ncollectors:\n"
        f"[sim]\nscenario: {scenario}\nseed: 42\nspeed: 100\ntree-dir: /x/tree\n"
        "[vdsm]\nkey-file = /abs/key.pem\n"
        "[Controller: Balloon]\nstep = 0.1\n"
    )
    cfg = load_config(str(p))
    m = cfg.main
    assert m.main_loop_interval == 0.5 and m.sample_history_length == 3
    assert m.hypervisor_interface == "sim"
    assert m.rpc == TcpPort(8888) and m.rpc.host == "127.0.0.1"
    assert (m.record_file, m.record_max_bytes, m.record_backup_count) == ("/tmp/rec.jsonl", 1000, 0)
    assert m.metrics_address == HostPort("0.0.0.0", 9100)
    assert (m.proc_root, m.sys_root, m.hypervisor_call_timeout) == ("/x/proc", "/x/sys", 2.5)
    assert m.controllers == ("Balloon", "KSM")
    assert cfg.logging.level == logging.DEBUG and cfg.logging.max_bytes == 0
    assert cfg.host_collectors == ()
    assert cfg.sim.scenario == str(scenario)
    assert (cfg.sim.seed, cfg.sim.speed, cfg.sim.tree_dir) == (42, 100.0, "/x/tree")
    assert cfg.vdsm.key_path == "/abs/key.pem"
    assert cfg.controller_settings == {"Balloon": {"step": "0.1"}}


@pytest.mark.parametrize("value,level", [
    ("debug", logging.DEBUG), ("INFO", logging.INFO), ("warn", logging.WARNING),
    ("warning", logging.WARNING), ("error", logging.ERROR), ("critical", logging.CRITICAL),
    ("5", logging.DEBUG), ("4", logging.INFO), ("3", logging.WARNING),
    ("2", logging.ERROR), ("1", logging.CRITICAL),
])
def test_verbosity_names_and_numbers(value: str, level: int) -> None:
    assert load_config(None, {"logging.verbosity": value}).logging.level == level


@pytest.mark.parametrize("alias", ["vdsm", "vdsmjsonrpcbulk", "vdsmjsonrpc", "vdsmjsonrpcclient"])
def test_vdsm_aliases_normalised(alias: str) -> None:
    assert load_config(None, {"main.hypervisor-interface": alias}).main.hypervisor_interface == "vdsm"


@pytest.mark.parametrize("value,expected", [
    ("-1", RPC_DISABLED), ("", RPC_DISABLED), ("1", TcpPort(1)), ("65535", TcpPort(65535)),
    ("/run/mom.sock", UnixSocket("/run/mom.sock")), ("./mom.sock", UnixSocket("./mom.sock")),
])
def test_rpc_port_forms(value: str, expected: object) -> None:
    assert load_config(None, {"main.rpc-port": value}).main.rpc == expected


@pytest.mark.parametrize("value,expected", [
    ("", None), ("localhost:0", HostPort("localhost", 0)), ("[::1]:9100", HostPort("::1", 9100)),
])
def test_metrics_address_forms(value: str, expected: HostPort | None) -> None:
    assert load_config(None, {"main.metrics-address": value}).main.metrics_address == expected


def test_metrics_address_str() -> None:
    assert str(HostPort("::1", 9100)) == "[::1]:9100"
    assert str(HostPort("127.0.0.1", 9100)) == "127.0.0.1:9100"


@pytest.mark.parametrize("text, message", [
    ("[main]\nguest-manager-multi-thread: false\npolcy-dir: /x\n",
     ":3: [main] polcy-dir: unknown key (did you mean policy-dir?)"),
    ("[main]\n[loging]\nlog: x\n", ":2: unknown section [loging] (did you mean [logging]?)"),
    ("[main]\nhypervisor-interfce: sim\n",
     ":2: [main] hypervisor-interfce: unknown key (did you mean hypervisor-interface?)"),
    ("[Controler: KSM]\nx: 1\n", ":1: unknown section [Controler: KSM] (did you mean [Controller: NAME]?)"),
    ("[whatever]\nfoo: bar\n", ":1: unknown section [whatever]"),
    ("[main]\n[Collector: GuestQemuAgnet]\nsocket_path: /x\n",
     ":2: [Collector: GuestQemuAgnet]: unknown collector 'GuestQemuAgnet' (did you mean [Collector: GuestQemuAgent]?)"),
    ("[Controller: Ballon]\n",
     ":1: [Controller: Ballon]: unknown controller 'Ballon' (did you mean [Controller: Balloon]?)"),
    # [DEFAULT] has no special meaning in MOM: it is an unknown section, not defaults for [main].
    ("[DEFAULT]\npolicy: x\n", ":1: unknown section [DEFAULT]"),
])
def test_unknown_keys_and_sections_are_errors_with_a_suggestion(tmp_path: Path, text: str, message: str) -> None:
    p = tmp_path / "mom.conf"
    p.write_text(text)
    with pytest.raises(ConfigError) as e:
        load_config(str(p))
    assert str(e.value) == f"{p}{message}"


def test_unknown_override_section_is_an_error() -> None:
    with pytest.raises(ConfigError, match=r"unknown section \[mian\]"):
        load_config(None, {"mian.policy": "x"})
    with pytest.raises(ConfigError, match=r"unknown key \(did you mean policy-dir\?\)"):
        load_config(None, {"main.policydir": "x"})
