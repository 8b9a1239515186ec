"""The flight recorder: JSON lines, size rotation, a write failure logged once."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from mom.daemon.recorder import FlightRecorder


def record(n: int) -> dict:
    return {"tick": n, "host": {"statistics": [{"mem_free": 1024 * n}]}, "guests": [], "ok": True}


def test_lines_and_rotation(tmp_path: Path) -> None:
    path = tmp_path / "record.jsonl"
    line_len = len(json.dumps(record(10), separators=(",", ":"))) + 1
    rec = FlightRecorder(str(path), max_bytes=line_len * 3, backup_count=2)
    for n in range(10, 20):
        rec.write(record(n))
    ticks = lambda p: [json.loads(line)["tick"] for line in p.read_text().splitlines()]  # noqa: E731
    # Newest three in the file, the three before in .1, the three before those in .2; older ones dropped.
    assert ticks(path) == [19]
    assert ticks(Path(f"{path}.1")) == [16, 17, 18]
    assert ticks(Path(f"{path}.2")) == [13, 14, 15]
    assert not Path(f"{path}.3").exists()
    assert all(len(line) + 1 <= line_len * 3 for line in path.read_text().splitlines())


def test_unwritable_target_is_logged_once_and_recovers(tmp_path: Path, caplog) -> None:
    target = tmp_path / "record.jsonl"
    target.mkdir()  # a directory where the file should be: writes fail, even as root
    rec = FlightRecorder(str(target))
    with caplog.at_level(logging.INFO, logger="mom.recorder"):
        for n in range(5):
            rec.write(record(n))
        errors = [r for r in caplog.records if r.levelno == logging.ERROR]
        assert len(errors) == 1 and str(target) in errors[0].getMessage()
        target.rmdir()
        rec.write(record(5))
    assert [json.loads(line)["tick"] for line in target.read_text().splitlines()] == [5]
    assert any("writing again" in r.getMessage() for r in caplog.records)
