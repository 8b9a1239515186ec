"""Shared inputs of the lab tests: a tiny overcommitted host and momctl as a subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

# Two guests that want more than the 3 GiB host can give at the peaks of a's cycle.
TINY = """\
name = "tiny"
seed = 5
[host]
memory = 3072
swap = 1024
base_used = 256
[[guest]]
name = "a"
max = 1536
min = 512
workload = { type = "daily", mean = 800, amplitude = 500, period = 120, noise = 10 }
[[guest]]
name = "b"
max = 1536
min = 512
workload = { type = "steady", level = 900, noise = 10 }
"""


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.toml"
    path.write_text(TINY)
    return path


def momctl(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mom.cli.momctl", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=300)


def json_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


# What is measured, not what it cost: equal for equal seeds.
def figures(row: dict) -> dict:
    return {k: v for k, v in row.items() if k not in ("wall_s", "cpu_s", "sim_s_per_s")}
