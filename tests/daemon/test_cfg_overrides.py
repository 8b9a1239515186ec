"""Command-line overrides beat the file; -r and -P replace each other."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import pytest

from mom.daemon.config import ConfigError, add_cli_arguments, cli_overrides, load_config


@pytest.fixture
def policy(tmp_path: Path) -> Path:
    p = tmp_path / "cli.policy"
    p.write_text("(+ 1 1)")
    return p


@pytest.fixture
def policy_dir(tmp_path: Path) -> Path:
    d = tmp_path / "mom.d"
    d.mkdir()
    return d


def _conf(tmp_path: Path, text: str) -> str:
    p = tmp_path / "mom.conf"
    p.write_text(text)
    return str(p)


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_cli_arguments(parser)
    return parser.parse_args(argv)


def test_overrides_beat_file(tmp_path: Path) -> None:
    path = _conf(tmp_path,
                 "[main]\npolicy-engine-interval: 10\nplot-dir: /a\n[logging]\nverbosity: error\nlog: stdio\n")
    cfg = load_config(path, {
        "main.policy-engine-interval": "2", "main.plot-dir": "/b",
        "logging.verbosity": "debug", "logging.log": "/tmp/mom.log",
    })
    assert cfg.main.policy_engine_interval == 2.0
    assert cfg.main.plot_dir == "/b"
    assert cfg.logging.level == logging.DEBUG
    assert cfg.logging.log == "/tmp/mom.log"


def test_overrides_without_file() -> None:
    cfg = load_config(None, {"guest.collectors": "GuestMemoryOptional", "sim.seed": "7"})
    assert cfg.guest_collectors == ("GuestMemoryOptional",)
    assert cfg.sim.seed == 7
    assert cfg.source == ""


def test_override_collector_section() -> None:
    cfg = load_config(None, {"Collector: GuestQemuAgent.socket_path": "/run/q"})
    assert cfg.collector_settings == {"GuestQemuAgent": {"socket_path": "/run/q"}}


def test_policy_override_clears_file_policy_dir(tmp_path: Path, policy: Path, policy_dir: Path) -> None:
    path = _conf(tmp_path, f"[main]\npolicy-dir: {policy_dir}\n")
    cfg = load_config(path, {"main.policy": str(policy)})
    assert cfg.main.policy == str(policy)
    assert cfg.main.policy_dir == ""


def test_policy_dir_override_clears_file_policy(tmp_path: Path, policy: Path, policy_dir: Path) -> None:
    path = _conf(tmp_path, f"[main]\npolicy: {policy}\n")
    cfg = load_config(path, {"main.policy-dir": str(policy_dir)})
    assert cfg.main.policy_dir == str(policy_dir)
    assert cfg.main.policy == ""


def test_both_overrides_is_an_error(policy: Path, policy_dir: Path) -> None:
    with pytest.raises(ConfigError, match=r"^command line: \[main\] policy: only one of policy and policy-dir"):
        load_config(None, {"main.policy": str(policy), "main.policy-dir": str(policy_dir)})


def test_cli_rules_file_clears_policy_dir(tmp_path: Path, policy: Path, policy_dir: Path) -> None:
    args = _parse(["-c", "x.conf", "-r", str(policy)])
    assert args.config_file == "x.conf"
    overrides = cli_overrides(args)
    assert overrides == {"main.policy": str(policy), "main.policy-dir": ""}
    path = _conf(tmp_path, f"[main]\npolicy-dir: {policy_dir}\n")
    cfg = load_config(path, overrides)
    assert (cfg.main.policy, cfg.main.policy_dir) == (str(policy), "")


def test_cli_policy_dir_clears_policy(tmp_path: Path, policy: Path, policy_dir: Path) -> None:
    overrides = cli_overrides(_parse(["--policy-dir", str(policy_dir)]))
    assert overrides == {"main.policy-dir": str(policy_dir), "main.policy": ""}
    path = _conf(tmp_path, f"[main]\npolicy: {policy}\n")
    cfg = load_config(path, overrides)
    assert (cfg.main.policy, cfg.main.policy_dir) == ("", str(policy_dir))


def test_cli_rules_file_and_policy_dir_exclusive(policy: Path, policy_dir: Path) -> None:
    with pytest.raises(SystemExit):
        _parse(["-r", str(policy), "-P", str(policy_dir)])


def test_cli_other_options() -> None:
    args = _parse(["-p", "/plots", "-l", "/var/log/mom.log", "-v", "5", "-d", "--pid-file", "/run/mom.pid"])
    assert args.daemonize is True and args.pid_file == "/run/mom.pid"
    assert cli_overrides(args) == {
        "main.plot-dir": "/plots", "logging.log": "/var/log/mom.log", "logging.verbosity": "5",
    }
    cfg = load_config(None, cli_overrides(args))
    assert cfg.main.plot_dir == "/plots"
    assert cfg.logging.level == logging.DEBUG


def test_cli_no_options() -> None:
    args = _parse([])
    assert args.config_file is None and args.daemonize is False
    assert cli_overrides(args) == {}
