"""packaging/mom-kvm.spec built with rpmbuild here (Debian), its Python macros replaced
by packaging/rpm-macros-debian: the spec's sections run and its file list matches what
the install produces. Not a build on RHEL (no RHEL root here): dependencies and the
Python macros there are untested."""

from __future__ import annotations

import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

import mom
from tests.support.momd import REPO

SPEC = REPO / "packaging" / "mom-kvm.spec"
MACROS = REPO / "packaging" / "rpm-macros-debian"
SYSTEM_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"  # Debian's python3, not a venv's or pyenv's


def why_not() -> str | None:
    if shutil.which("rpmbuild", path=SYSTEM_PATH) is None:
        return "rpmbuild is not installed (apt-get install rpm)"
    probe = subprocess.run(["/usr/bin/python3", "-c", "import build, installer, setuptools"],
                           capture_output=True, text=True)
    if probe.returncode != 0:
        return "Debian's python3-build, python3-installer, python3-setuptools are not installed"
    return None


def source_tarball(top: Path) -> None:
    """What git tracks, as mom-kvm-VERSION/ (as `git archive` makes it), working-tree contents."""
    files = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout
    (top / "SOURCES").mkdir(parents=True)
    prefix = f"mom-kvm-{mom.__version__}"
    with tarfile.open(top / "SOURCES" / f"{prefix}.tar.gz", "w:gz") as tar:
        for name in filter(None, files.decode().split("\0")):
            if (REPO / name).exists():
                tar.add(REPO / name, arcname=f"{prefix}/{name}", recursive=False)


def test_spec_builds_and_lists_what_it_installs(tmp_path: Path) -> None:
    why = why_not()
    if why:
        pytest.skip(why)
    source_tarball(tmp_path)
    r = subprocess.run(["rpmbuild", "-bb", "--nodeps", "--define", f"_topdir {tmp_path}", "--load", str(MACROS),
                        str(SPEC)], capture_output=True, text=True, timeout=300,
                       env={**os.environ, "PATH": SYSTEM_PATH})
    assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]
    rpm = tmp_path / "RPMS" / "noarch" / f"mom-kvm-{mom.__version__}-1.noarch.rpm"
    listed = subprocess.run(["rpm", "-qlp", str(rpm)], capture_output=True, text=True, check=True).stdout.split()
    for path in ("/usr/sbin/momd", "/usr/bin/momctl", "/etc/mom/mom.conf", "/etc/mom/policies/balloon.policy",
                 "/usr/lib/systemd/system/momd.service", "/usr/lib/tmpfiles.d/mom-kvm.conf",
                 "/usr/share/man/man8/momd.8", "/usr/share/man/man5/mom.conf.5",
                 "/usr/share/bash-completion/completions/momctl", "/var/log/mom"):
        assert any(p == path or p.startswith(path + ".") for p in listed), path
    config = subprocess.run(["rpm", "-qpc", str(rpm)], capture_output=True, text=True, check=True).stdout.split()
    assert "/etc/mom/mom.conf" in config
