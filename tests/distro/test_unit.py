"""contrib/momd.service: hardened (systemd-analyze security), Type=notify with a
watchdog, and the same paths as the packaged configuration, momd and momctl."""

from __future__ import annotations

import configparser
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from mom.cli import momd, rpc_cmds
from mom.daemon.config import load_config
from tests.support.momd import REPO

UNIT = REPO / "contrib" / "momd.service"
PACKAGED_CONFIG = REPO / "doc" / "mom.conf"
MAX_EXPOSURE = 4.0


def unit_settings() -> dict[str, list[str]]:
    """KEY -> its values in [Service] and [Unit], in order (keys may repeat)."""
    out: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        if "=" in line and not line.lstrip().startswith(("#", ";", "[")):
            key, value = line.split("=", 1)
            out.setdefault(key.strip(), []).append(value.strip())
    return out


def offline_security_works() -> str | None:
    """Why systemd-analyze security --offline cannot run here, or None when it can."""
    if shutil.which("systemd-analyze") is None:
        return "systemd-analyze is not installed"
    r = subprocess.run(["systemd-analyze", "security", "--offline=true", "--no-pager", str(UNIT)],
                       capture_output=True, text=True, timeout=60)
    if "Overall exposure level" not in r.stdout:
        return f"systemd-analyze security --offline does not work here: {r.stderr.strip()[:200]}"
    return None


def test_exposure_is_at_most_4() -> None:
    why = offline_security_works()
    if why:
        pytest.skip(why)
    r = subprocess.run(["systemd-analyze", "security", "--offline=true", "--no-pager", str(UNIT)],
                       capture_output=True, text=True, timeout=60)
    m = re.search(r"Overall exposure level for \S+: ([0-9.]+)", r.stdout)
    assert m, r.stdout[-2000:]
    assert float(m.group(1)) <= MAX_EXPOSURE, r.stdout


def test_notify_and_watchdog() -> None:
    unit = unit_settings()
    assert unit["Type"] == ["notify"]
    assert unit["NotifyAccess"] == ["main"]
    watchdog = unit["WatchdogSec"][0]
    assert watchdog.isdigit() and int(watchdog) >= 30  # above any healthy pause between steps' pings
    assert unit["RestartPreventExitStatus"] == ["2"]  # a bad configuration is not restarted in a loop


def test_paths_agree_with_the_packaged_configuration() -> None:
    """ExecStart's -c is where momd looks first; the socket is momctl's default and lies in
    the RuntimeDirectory; the recorder lies in the LogsDirectory."""
    unit = unit_settings()
    exec_start = unit["ExecStart"][0].split()
    assert exec_start[0] == "/usr/sbin/momd"
    assert exec_start[exec_start.index("-c") + 1] == momd.DEFAULT_CONFIG_FILES[0]
    raw = configparser.ConfigParser(interpolation=None, delimiters=(":", "="))
    raw.read(PACKAGED_CONFIG)
    assert raw.get("main", "rpc-port") == rpc_cmds.DEFAULT_SOCKET
    assert Path(rpc_cmds.DEFAULT_SOCKET).parent == Path("/run") / unit["RuntimeDirectory"][0]
    assert Path(raw.get("main", "record-file")).parent == Path("/var/log") / unit["LogsDirectory"][0]
    assert raw.get("main", "policy-dir") == "/etc/mom/policies"
    assert raw.get("logging", "log") == "stdio"  # the journal


def test_packaged_configuration_is_valid(tmp_path: Path) -> None:
    """doc/mom.conf as installed, with its directories pointed at this checkout's."""
    text = PACKAGED_CONFIG.read_text().replace("/etc/mom/policies", str(REPO / "doc" / "policies"))
    conf = tmp_path / "mom.conf"
    conf.write_text(text)
    config = load_config(str(conf))
    assert config.main.hypervisor_interface == "libvirt"
    assert set(config.main.controllers) == {"Balloon", "KSM", "VirtioMem"}
    assert "GuestVirtioMemOptional" in config.guest_collectors  # the default policy sizes virtio-mem guests


def test_unit_verifies(tmp_path: Path) -> None:
    """systemd-analyze verify: every directive known and parsed (momd itself need not be
    installed here: its absence is the one message allowed)."""
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed")
    unit = tmp_path / "momd.service"
    unit.write_text(UNIT.read_text())
    r = subprocess.run(["systemd-analyze", "verify", "--man=no", str(unit)], capture_output=True, text=True,
                       timeout=60)
    messages = [line for line in (r.stdout + r.stderr).splitlines()
                if line.strip() and "Command /usr/sbin/momd is not executable" not in line]
    assert messages == [], messages
