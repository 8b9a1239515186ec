"""The defaults an installed MOM relies on: --version, momd's configuration file
without -c, momctl's socket without --socket/--port."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import mom
from mom.cli import momd, rpc_cmds
from tests.support.momd import run_momctl, run_momd


def test_version_options() -> None:
    for run, name in ((run_momd, "momd"), (run_momctl, "momctl")):
        r = run(["--version"])
        assert r.returncode == 0 and r.stdout == f"{name} {mom.__version__}\n", r


def test_default_config_file_is_the_first_that_exists(tmp_path: Path) -> None:
    package, original = tmp_path / "mom" / "mom.conf", tmp_path / "mom.conf"
    candidates = (str(package), str(original))
    assert momd.default_config_file(candidates) is None
    original.write_text("[main]\n")
    assert momd.default_config_file(candidates) == str(original)
    package.parent.mkdir()
    package.write_text("[main]\n")
    assert momd.default_config_file(candidates) == str(package)


def test_package_paths_agree() -> None:
    """The packaged configuration's socket is momctl's default, and momd looks for it first."""
    assert momd.DEFAULT_CONFIG_FILES[0] == "/etc/mom/mom.conf"
    assert rpc_cmds.DEFAULT_SOCKET == "/run/mom/mom.sock"


@pytest.mark.skipif(any(os.path.exists(p) for p in momd.DEFAULT_CONFIG_FILES),
                    reason="this machine has a MOM configuration at a default path")
def test_momd_without_a_configuration_says_so() -> None:
    r = run_momd(["--check"])
    assert r.returncode == 0, r.stderr
    assert "no configuration file (-c FILE; none of /etc/mom/mom.conf, /etc/mom.conf, /etc/momd.conf exists)" \
        in r.stderr
