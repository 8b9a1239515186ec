"""What the end-to-end tests share: waiting through libvirtd restarts, the guest's
MemTotal from its serial console, the policy file momd reads, and what the
conftest's fixtures are made of (``image``: the guest image; ``world``: a
private libvirtd under /var/tmp, whose guests, momd daemons and files are
removed by PID and path at teardown).

Import it only where libvirt-python is installed (the tests importorskip first).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import libvirt
import pytest

from tests.support.wait import wait_until

from .guest_image import MEMLINE, GuestImage, ImageError, guest_image
from .lvd import Libvirtd, LibvirtdError, unavailable_reason

libvirt.registerErrorHandler(lambda ctx, err: None, None)


def wait_for(what: str, check: Callable[[], object], timeout: float, on_fail: Callable[[], str] = lambda: "") -> float:
    """wait_until check() is true, a libvirt error counting as not yet (libvirtd is restarting);
    the seconds it took."""
    t0 = time.monotonic()

    def check_quietly() -> bool:
        try:
            return bool(check())
        except libvirt.libvirtError:
            return False
    wait_until(check_quietly, timeout, 0.2, what=what, detail=on_fail)
    return time.monotonic() - t0


def guest_mem(serial: Path) -> int | None:
    """The guest's latest MemTotal (KiB) from its serial console."""
    try:
        text = serial.read_text(errors="replace")
    except OSError:
        return None
    found = re.findall(rf"^{MEMLINE} (\d+) (\d+)", text, re.M)
    return int(found[-1][0]) if found else None


def write_policy(path: Path, text: str) -> None:
    """Replace momd's policy file at once (momd may read it at any moment)."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def image_or_skip() -> GuestImage:
    reason = unavailable_reason()
    if reason:
        pytest.skip(f"end-to-end libvirt test: {reason}")
    try:
        return guest_image()
    except ImageError as e:
        pytest.skip(f"end-to-end libvirt test: no guest image: {e}")


@contextlib.contextmanager
def private_world(image: GuestImage) -> Iterator[dict]:
    # Under /var/tmp, not pytest's 0700 tmp_path: QEMU and libvirt's helpers read from here.
    base = Path(tempfile.mkdtemp(prefix="mom-lv-e2e-", dir="/var/tmp"))
    base.chmod(0o755)
    lvd = Libvirtd(base / "libvirt")
    started: list = []
    guest_pids: set[int] = set()
    try:
        try:
            lvd.start()
        except LibvirtdError as e:
            pytest.fail(f"cannot start the test's libvirtd: {e}")
        yield {"base": base, "lvd": lvd, "image": image, "started": started, "guest_pids": guest_pids}
    finally:
        for m in started:
            m.close()
        guest_pids.update(lvd.guest_pids())
        if lvd.pid is not None:
            try:
                conn = libvirt.open(lvd.uri)
                for dom in conn.listAllDomains():
                    if dom.isActive():
                        dom.destroy()
                    dom.undefine()
                conn.close()
            except libvirt.libvirtError:
                pass
        lvd.stop()
        Libvirtd.kill_guests(sorted(guest_pids))
        if os.environ.get("MOM_KEEP_E2E"):
            print(f"\nkept {base}")
        else:
            shutil.rmtree(base, ignore_errors=True)
