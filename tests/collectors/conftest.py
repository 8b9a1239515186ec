"""Shared fixtures for the collector tests: fixture trees and a fake hypervisor."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from mom.collectors.base import CollectorContext
from mom.hypervisors.base import GuestInfo, HypervisorError, HypervisorInterface

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
PROC_BASIC = FIXTURES / "proc-basic"
SYS_BASIC = FIXTURES / "sys-basic"


class FakeHypervisor(HypervisorInterface):
    names = ("fake",)

    def __init__(self, guests: list[GuestInfo] | None = None, fail: bool = False) -> None:
        super().__init__(sys_root="/nonexistent")
        self.guests = guests or []
        self.fail = fail

    def list_guests(self) -> list[GuestInfo]:
        if self.fail:
            raise HypervisorError("connection refused")
        return list(self.guests)


@pytest.fixture
def proc_tree(tmp_path: Path) -> Path:
    """A writable copy of proc-basic."""
    dest = tmp_path / "proc"
    shutil.copytree(PROC_BASIC, dest)
    return dest


@pytest.fixture
def sys_tree(tmp_path: Path) -> Path:
    """A writable copy of sys-basic."""
    dest = tmp_path / "sys"
    shutil.copytree(SYS_BASIC, dest)
    return dest


@pytest.fixture
def basic_ctx() -> CollectorContext:
    """Read-only context on the committed fixture trees."""
    return CollectorContext(proc_root=str(PROC_BASIC), sys_root=str(SYS_BASIC), interval=5.0)


def replace_line(path: Path, prefix: str, new: str) -> None:
    """Replace the one line of ``path`` starting with ``prefix`` by ``new``."""
    lines = path.read_text().splitlines()
    hits = [i for i, line in enumerate(lines) if line.startswith(prefix)]
    assert len(hits) == 1, (path, prefix)
    lines[hits[0]] = new
    path.write_text("\n".join(lines) + "\n")


def set_stat_fields(path: Path, values: dict[int, int]) -> None:
    """Rewrite fields (numbered as in proc(5)) of a /proc/PID/stat fixture."""
    text = path.read_text()
    end = text.rfind(")")
    head, rest = text[: end + 1], text[end + 1 :].split()
    for number, value in values.items():
        rest[number - 3] = str(value)
    path.write_text(head + " " + " ".join(rest) + "\n")


