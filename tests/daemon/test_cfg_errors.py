"""Every configuration error is a ConfigError with one line naming file, section, key."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import mom.controllers  # noqa: F401  (fills the registry)
from mom.controllers import base as controllers_base
from mom.daemon.config import ConfigError, load_config


def _write(tmp_path: Path, text: str) -> str:
    p = tmp_path / "mom.conf"
    p.write_text(text)
    return str(p)


def _error(path: str | None, overrides: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(path, overrides)
    msg = str(info.value)
    assert "\n" not in msg
    return msg


@pytest.mark.parametrize("section,key,value,problem", [
    ("main", "policy-engine-interval", "ten", "expected a number, got 'ten'"),
    ("main", "main-loop-interval", "0", "expected a positive number, got '0'"),
    ("main", "host-monitor-interval", "-5", "expected a positive number, got '-5'"),
    ("main", "guest-monitor-interval", "nan", "expected a number, got 'nan'"),
    ("main", "guest-manager-interval", "", "expected a number, got ''"),
    ("main", "hypervisor-call-timeout", "0", "expected a positive number"),
    ("main", "sample-history-length", "2.5", "expected an integer, got '2.5'"),
    ("main", "sample-history-length", "0", "expected an integer >= 1, got '0'"),
    ("main", "record-max-bytes", "big", "expected an integer, got 'big'"),
    ("logging", "verbosity", "loud", "expected debug, info, warn, error, critical or 1-5, got 'loud'"),
    ("logging", "verbosity", "6", "got '6'"),
    ("logging", "verbosity", "0", "got '0'"),
    ("logging", "max-bytes", "-1", "expected an integer >= 0"),
    ("main", "rpc-port", "0", "expected -1, a TCP port 1-65535 or a socket path, got '0'"),
    ("main", "rpc-port", "70000", "got '70000'"),
    ("main", "rpc-port", "-2", "got '-2'"),
    ("main", "rpc-port", "port", "got 'port'"),
    ("main", "metrics-address", "9100", "expected HOST:PORT"),
    ("main", "metrics-address", "localhost:http", "expected HOST:PORT"),
    ("main", "metrics-address", "localhost:99999", "port must be 0-65535"),
    ("vdsm", "port", "0", "expected an integer >= 1"),
    ("vdsm", "request-timeout", "soon", "expected a number, got 'soon'"),
    ("sim", "speed", "0", "expected a positive number"),
    ("sim", "seed", "x", "expected an integer, got 'x'"),
])
def test_bad_values(tmp_path: Path, section: str, key: str, value: str, problem: str) -> None:
    path = _write(tmp_path, f"[{section}]\n{key}: {value}\n")
    msg = _error(path)
    assert msg.startswith(f"{path}: [{section}] {key}: ")
    assert problem in msg


def test_unknown_interface_names_known_ones(tmp_path: Path) -> None:
    path = _write(tmp_path, "[main]\nhypervisor-interface: xen\n")
    msg = _error(path)
    assert msg.startswith(f"{path}: [main] hypervisor-interface: unknown hypervisor interface 'xen'")
    for name in ("libvirt", "sim", "vdsm", "vdsmjsonrpcbulk", "vdsmjsonrpc", "vdsmjsonrpcclient"):
        assert name in msg


def test_unknown_collector(tmp_path: Path) -> None:
    path = _write(tmp_path, "[host]\ncollectors: HostMemory, HostMagic\n")
    msg = _error(path)
    assert msg.startswith(f"{path}: [host] collectors: unknown collector 'HostMagic'")
    assert "HostKSM" in msg  # lists the known host collectors


def test_guest_collector_in_host_list(tmp_path: Path) -> None:
    path = _write(tmp_path, "[host]\ncollectors: GuestMemory\n")
    assert _error(path) == f"{path}: [host] collectors: GuestMemory is a guest collector, not a host collector"


def test_host_collector_in_guest_list(tmp_path: Path) -> None:
    path = _write(tmp_path, "[guest]\ncollectors: GuestMemory, HostKSM\n")
    assert _error(path) == f"{path}: [guest] collectors: HostKSM is a host collector, not a guest collector"


def test_unknown_controller(tmp_path: Path) -> None:
    path = _write(tmp_path, "[main]\ncontrollers: Balloon, Turbo\n")
    msg = _error(path)
    assert msg.startswith(f"{path}: [main] controllers: unknown controller 'Turbo'")
    assert "Balloon" in msg and "IoTune" in msg


def test_original_controller_names_always_accepted() -> None:
    cfg = load_config(None, {"main.controllers": "Balloon, KSM, CpuTune, IoTune"})
    assert cfg.main.controllers == ("Balloon", "KSM", "CpuTune", "IoTune")


def test_registered_controller_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(controllers_base.REGISTRY, "Extra", object)  # type: ignore[arg-type]
    assert load_config(None, {"main.controllers": "Extra"}).main.controllers == ("Extra",)


def test_policy_and_policy_dir_both_set(tmp_path: Path) -> None:
    policy = tmp_path / "a.policy"
    policy.write_text("(+ 1 1)")
    path = _write(tmp_path, f"[main]\npolicy: {policy}\npolicy-dir: {tmp_path}\n")
    assert _error(path) == f"{path}: [main] policy-dir: only one of policy and policy-dir may be set"


def test_missing_config_file(tmp_path: Path) -> None:
    path = str(tmp_path / "nope.conf")
    assert _error(path) == f"{path}: cannot read configuration file: No such file or directory"


def test_config_file_is_directory(tmp_path: Path) -> None:
    assert _error(str(tmp_path)).startswith(f"{tmp_path}: cannot read configuration file: ")


@pytest.mark.skipif(os.geteuid() == 0, reason="root can read unreadable files")
def test_unreadable_config_file(tmp_path: Path) -> None:
    path = _write(tmp_path, "[main]\n")
    os.chmod(path, 0)
    assert _error(path) == f"{path}: cannot read configuration file: Permission denied"


def test_missing_policy_file(tmp_path: Path) -> None:
    missing = tmp_path / "missing.policy"
    path = _write(tmp_path, f"[main]\npolicy: {missing}\n")
    assert _error(path) == f"{path}: [main] policy: cannot read '{missing}': No such file or directory"


def test_policy_is_directory(tmp_path: Path) -> None:
    path = _write(tmp_path, f"[main]\npolicy: {tmp_path}\n")
    assert _error(path) == f"{path}: [main] policy: '{tmp_path}' is a directory, not a file"


@pytest.mark.skipif(os.geteuid() == 0, reason="root can read unreadable files")
def test_unreadable_policy_file(tmp_path: Path) -> None:
    policy = tmp_path / "a.policy"
    policy.write_text("(+ 1 1)")
    policy.chmod(0)
    path = _write(tmp_path, f"[main]\npolicy: {policy}\n")
    assert _error(path) == f"{path}: [main] policy: cannot read '{policy}': Permission denied"


def test_policy_dir_not_a_directory(tmp_path: Path) -> None:
    f = tmp_path / "file"
    f.write_text("")
    path = _write(tmp_path, f"[main]\npolicy-dir: {f}\n")
    assert _error(path) == f"{path}: [main] policy-dir: '{f}' is not a directory"


def test_policy_dir_missing(tmp_path: Path) -> None:
    d = tmp_path / "mom.d"
    path = _write(tmp_path, f"[main]\npolicy-dir: {d}\n")
    assert _error(path) == f"{path}: [main] policy-dir: '{d}' does not exist"


def test_missing_sim_scenario(tmp_path: Path) -> None:
    s = tmp_path / "nope.json"
    path = _write(tmp_path, f"[sim]\nscenario: {s}\n")
    assert _error(path) == f"{path}: [sim] scenario: cannot read '{s}': No such file or directory"


def test_syntax_errors_are_one_line(tmp_path: Path) -> None:
    path = _write(tmp_path, "main-loop-interval: 5\n")
    assert _error(path) == f"{path}:1: expected a [section] header, got 'main-loop-interval: 5'"
    path = _write(tmp_path, "[main]\njust words\n")
    assert _error(path) == f"{path}:2: expected 'key: value', got 'just words'"
    path = _write(tmp_path, "[main]\npolicy:\npolicy = x\n")
    assert _error(path) == f"{path}:3: [main] policy: set twice"
    path = _write(tmp_path, "[main]\n[main]\n")
    assert _error(path) == f"{path}:2: [main] appears twice"


def test_multiline_value_error_stays_one_line(tmp_path: Path) -> None:
    path = _write(tmp_path, "[main]\npolicy-engine-interval: 10\n  more\n")
    msg = _error(path)
    assert msg == f"{path}: [main] policy-engine-interval: expected a number, got '10\\nmore'"


def test_error_from_override_names_command_line(tmp_path: Path) -> None:
    path = _write(tmp_path, "[logging]\nverbosity: debug\n")
    msg = _error(path, {"logging.verbosity": "chatty"})
    assert msg.startswith("command line: [logging] verbosity: ")


def test_unknown_override_key() -> None:
    assert _error(None, {"main.polcy": "x"}) == "command line: [main] polcy: unknown key (did you mean policy?)"
    assert _error(None, {"verbosity": "debug"}) == "command line: verbosity: expected 'section.key'"


def test_unreadable_policy_file_any_user(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Root reads mode-0 files, so simulate EACCES inside the config module only.
    from mom.daemon import config as config_module

    policy = tmp_path / "a.policy"
    policy.write_text("(+ 1 1)")
    path = _write(tmp_path, f"[main]\npolicy: {policy}\n")

    def deny(file, *args, **kwargs):  # type: ignore[no-untyped-def]
        if str(file) == str(policy):
            raise PermissionError(13, "Permission denied", str(file))
        return open(file, *args, **kwargs)

    monkeypatch.setattr(config_module, "open", deny, raising=False)
    assert _error(path) == f"{path}: [main] policy: cannot read '{policy}': Permission denied"
