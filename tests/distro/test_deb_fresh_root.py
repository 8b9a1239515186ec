"""The Debian package, end to end: built from the committed main with
packaging/build-deb.sh in a fresh Debian 12 root (../shared/tools/fresh-debian.sh),
installed with apt, momd started as the unit's ExecStart would, `momctl ping` with
no flags (packaging/test-fresh-install.sh says what else it checks).

Slow (minutes: apt downloads the build tools and the dependencies), marked slow;
CI runs it. It needs root, debootstrap and the fresh-debian tool, and skips with the
reason when one is missing. Like every fresh-debian run it sees the committed main
only: commit before running it.
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from tests.support.momd import REPO

FRESH = REPO.parent / "shared" / "tools" / "fresh-debian.sh"
BUILD_TIMEOUT = 600  # the base system, once per machine (~1 min measured)
RUN_TIMEOUT = 1200


def why_not() -> str | None:
    if os.geteuid() != 0:
        return "needs root (fresh-debian.sh makes namespaces and mounts)"
    if not FRESH.exists():
        return f"{FRESH} is not there"
    if shutil.which("debootstrap") is None:
        return "debootstrap is not installed (apt-get install debootstrap; ./setup.sh --test does)"
    if shutil.which("unshare") is None:
        return "unshare (util-linux) is not installed"
    return None


@pytest.mark.slow
def test_package_installs_and_momd_answers_ping_on_the_default_socket() -> None:
    why = why_not()
    if why:
        pytest.skip(why)
    built = subprocess.run(["bash", str(FRESH), "build"], capture_output=True, text=True, timeout=BUILD_TIMEOUT)
    if built.returncode != 0:
        pytest.fail(f"fresh-debian.sh build failed ({built.returncode}):\n{built.stderr[-3000:]}")
    run = subprocess.run(["bash", str(FRESH), "run", str(REPO), "sh packaging/test-fresh-install.sh"],
                         capture_output=True, text=True, timeout=RUN_TIMEOUT, stdin=subprocess.DEVNULL)
    output = run.stdout + run.stderr
    assert run.returncode == 0, output[-6000:]
    assert "fresh-install: momd answered momctl ping over /run/mom/mom.sock and stopped cleanly" in output
    assert "fresh-install: OK" in output
    assert "momd is alive" in output  # momctl ping's own answer
    assert "check-completion: OK" in output
