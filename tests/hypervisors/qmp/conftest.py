"""Fixtures of the QMP interface's tests: fake QEMUs (tests/support/qmp_double.py)
on real unix sockets in a per-test directory, and interfaces closed after each test."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("qemu.qmp", reason="qemu.qmp is not installed (./setup.sh --test installs it)")

from mom.hypervisors.qmp import QmpHypervisor
from tests.support.qmp_double import QmpDouble


@pytest.fixture
def sockets(tmp_path: Path) -> Path:
    # A short path: a unix socket's path is limited to 107 bytes.
    d = Path(tmp_path) / "q"
    d.mkdir()
    return d


@pytest.fixture
def double(sockets: Path) -> Iterator[QmpDouble]:
    d = QmpDouble(str(sockets))
    yield d
    d.close()


@pytest.fixture
def make_hv(sockets: Path) -> Iterator[Callable[..., QmpHypervisor]]:
    made: list[QmpHypervisor] = []

    def make(**kwargs: Any) -> QmpHypervisor:
        kwargs = {"timeout": 1.0, "stats_period": 2, "retry_min": 0.05, "retry_max": 0.2, **kwargs}
        hv = QmpHypervisor(str(sockets / "*.qmp"), **kwargs)
        made.append(hv)
        return hv

    yield make
    for hv in made:
        hv.close()
