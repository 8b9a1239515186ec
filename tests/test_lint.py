"""The static checks run with the tests: mypy and ruff, as pyproject.toml configures them.

Each runs as the developer would run it (``python -m mypy``, ``python -m ruff check``)
from the repository root, so the configuration in pyproject.toml is the one that counts:
mypy --strict over mom/ and bench/, ruff over mom/, bench/ and tests/.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def run_tool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *args], cwd=REPO, capture_output=True, text=True, timeout=600)


def test_mypy_finds_nothing() -> None:
    done = run_tool("mypy")
    assert done.returncode == 0, done.stdout + done.stderr


def test_ruff_finds_nothing() -> None:
    done = run_tool("ruff", "check", "--no-cache", "--output-format", "concise")
    assert done.returncode == 0, done.stdout + done.stderr
