"""Fixtures of the libvirt tests: libvirt's test driver (in process) and, for the
end-to-end test, a private libvirtd with a tiny real QEMU guest.

The tests need libvirt-python (``./setup.sh --test`` installs it); the
end-to-end test also needs root, libvirtd, QEMU and busybox-static (the same
set-up installs them as root on Debian). They skip, saying why, only where
that is impossible.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

NO_BINDING = ("libvirt-python is not installed (./setup.sh --test installs it; it builds against "
              "libvirt-dev with pkg-config and gcc)")


@pytest.fixture
def iface_factory() -> Iterator:
    """Make LibvirtHypervisor instances that are closed at teardown."""
    from mom.hypervisors.libvirt import LibvirtHypervisor

    made = []

    def make(uri: str = "test:///default", **kwargs):  # type: ignore[no-untyped-def]
        h = LibvirtHypervisor(uri, **kwargs)
        made.append(h)
        return h

    yield make
    for h in made:
        h.close()


@pytest.fixture(scope="module")
def image():  # type: ignore[no-untyped-def]
    """The end-to-end tests' guest image (skips, saying why, where it cannot be made)."""
    pytest.importorskip("libvirt", reason=NO_BINDING)
    from .e2e import image_or_skip

    return image_or_skip()


@pytest.fixture
def world(image) -> Iterator[dict]:  # type: ignore[no-untyped-def]
    """A private libvirtd (e2e.private_world): {base, lvd, image, started, guest_pids}."""
    from .e2e import private_world

    with private_world(image) as w:
        yield w
