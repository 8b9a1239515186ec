"""The end-to-end test's private libvirtd (lvd.py) shares nothing with another
libvirtd on the machine: two of them run at once (each with its own pid file,
not /run/libvirtd.pid, which a second one could not lock)."""

from __future__ import annotations

from pathlib import Path

import pytest

from .conftest import NO_BINDING

libvirt = pytest.importorskip("libvirt", reason=NO_BINDING)

from .lvd import Libvirtd, unavailable_reason  # noqa: E402


@pytest.mark.skipif(unavailable_reason() is not None, reason=str(unavailable_reason()))
def test_two_private_libvirtds_at_once(tmp_path: Path) -> None:
    system_pid_file = Path("/run/libvirtd.pid")
    had_system_pid_file = system_pid_file.exists()
    first, second = Libvirtd(tmp_path / "a"), Libvirtd(tmp_path / "b")
    try:
        first.start()
        second.start()
        for lvd in (first, second):
            conn = libvirt.open(lvd.uri)
            try:
                assert conn.getURI().startswith("qemu")
            finally:
                conn.close()
            assert int(lvd.pid_file.read_text().split()[0]) == lvd.pid  # libvirtd is exec'd in place
        assert system_pid_file.exists() == had_system_pid_file  # not taken from a system libvirtd
    finally:
        second.stop()
        first.stop()
