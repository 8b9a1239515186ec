"""The flight recorder: JSON lines, size rotation, whole lines through a full
disk, one fault per failure that clears when a tick is written again."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from mom.daemon.appendlines import append_lines
from mom.daemon.recorder import FlightRecorder

REPO = Path(__file__).resolve().parents[2]


def record(n: int) -> dict:
    return {"tick": n, "host": {"statistics": [{"mem_free": 1024 * n}]}, "guests": [], "ok": True}


def ticks(path: Path) -> list[int]:
    return [json.loads(line)["tick"] for line in path.read_text().splitlines()]


def test_lines_and_rotation(tmp_path: Path) -> None:
    path = tmp_path / "record.jsonl"
    line_len = len(json.dumps(record(10), separators=(",", ":"))) + 1
    rec = FlightRecorder(str(path), max_bytes=line_len * 3, backup_count=2)
    for n in range(10, 20):
        rec.write(record(n))
    # Newest three in the file, the three before in .1, the three before those in .2; older ones dropped.
    assert ticks(path) == [19]
    assert ticks(Path(f"{path}.1")) == [16, 17, 18]
    assert ticks(Path(f"{path}.2")) == [13, 14, 15]
    assert not Path(f"{path}.3").exists()
    assert all(len(line) + 1 <= line_len * 3 for line in path.read_text().splitlines())


def test_unwritable_target_is_one_fault_until_it_recovers(tmp_path: Path, caplog) -> None:
    target = tmp_path / "record.jsonl"
    target.mkdir()  # a directory where the file should be: writes fail, even as root
    rec = FlightRecorder(str(target))
    with caplog.at_level(logging.INFO, logger="mom.recorder"):
        for n in range(5):
            rec.write(record(n))
        errors = [r for r in caplog.records if r.levelno == logging.ERROR]
        assert len(errors) == 1 and str(target) in errors[0].getMessage()
        assert list(rec.faults.active()) == ["output record-file"]
        target.rmdir()
        rec.write(record(5))
        rec.write(record(6))
    assert ticks(target) == [5, 6]
    assert [r.getMessage() for r in caplog.records if "recovered" in r.getMessage()] == \
        ["output record-file: recovered"]
    assert rec.faults.active() == {}
    assert rec.faults.counts["output"] == 5


def test_a_cut_last_line_is_removed_before_the_next(tmp_path: Path) -> None:
    path = tmp_path / "record.jsonl"
    path.write_text('{"tick":1}\n{"tick":2}\n{"tick":3,"host":{"sta')  # a crash mid-line
    FlightRecorder(str(path)).write(record(4))
    assert ticks(path) == [1, 2, 4]
    path.write_text('{"tick":1,"ho')  # no newline at all
    FlightRecorder(str(path)).write(record(5))
    assert ticks(path) == [5]


def test_append_lines_writes_the_header_once(tmp_path: Path) -> None:
    path = str(tmp_path / "x.dat")
    assert append_lines(path, b"1\n", header=b"# h\n") == 6
    assert append_lines(path, b"2\n", header=b"# h\n") == 8
    assert Path(path).read_text() == "# h\n1\n2\n"


def test_check_creates_nothing(tmp_path: Path) -> None:
    FlightRecorder(str(tmp_path / "record.jsonl")).check()
    assert list(tmp_path.iterdir()) == []
    existing = tmp_path / "old.jsonl"
    existing.write_text('{"tick":1}\n')
    FlightRecorder(str(existing)).check()
    assert existing.read_text() == '{"tick":1}\n'
    for bad in (tmp_path / "missing" / "record.jsonl", tmp_path):
        with pytest.raises(OSError):
            FlightRecorder(str(bad)).check()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old.jsonl"]


# A process whose files cannot grow past LIMIT bytes (RLIMIT_FSIZE, SIGXFSZ
# ignored: the write gets EFBIG, or a short count): a full disk without privileges.
FSIZE_SCRIPT = textwrap.dedent("""
    import json, logging, resource, signal, sys
    from mom.daemon.recorder import FlightRecorder
    path, limit = sys.argv[1], int(sys.argv[2])
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(levelname)s %(message)s")
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    rec = FlightRecorder(path, max_bytes=10 * limit, backup_count=0)
    for n in range(1, 200):
        rec.write({"tick": n, "pad": "x" * (n % 7) * 10, "ok": True})
    print(json.dumps(rec.faults.active()))
""")


def test_a_file_that_cannot_grow_keeps_whole_lines(tmp_path: Path) -> None:
    path = tmp_path / "record.jsonl"
    limit = 4000
    r = subprocess.run([sys.executable, "-c", FSIZE_SCRIPT, str(path), str(limit)], cwd=REPO,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    data = path.read_bytes()
    assert data.endswith(b"\n") and len(data) <= limit
    written = ticks(path)
    assert written == list(range(1, len(written) + 1)) and len(written) > 10  # every tick until it was full
    assert len(data) > limit - 200  # it filled up: the next line did not fit (the longest is < 200 bytes)
    errors = [line for line in r.stderr.splitlines() if line.startswith("ERROR")]
    assert len(errors) == 1 and "File too large" in errors[0], r.stderr  # once, not once per tick
    assert "recovered" not in r.stderr
    assert json.loads(r.stdout) == {"output record-file": f"{path}: File too large"}


# A real full disk: a 64 KiB tmpfs in a private mount namespace (skipped where
# unprivileged user namespaces or mounts are not allowed).
TMPFS_SCRIPT = textwrap.dedent("""
    import json, logging, os, sys
    from mom.daemon.recorder import FlightRecorder
    disk = sys.argv[1]
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(levelname)s %(message)s")
    path, filler = os.path.join(disk, "record.jsonl"), os.path.join(disk, "filler")
    rec = FlightRecorder(path, max_bytes=12 * 1024, backup_count=3)
    n = 0
    def write(count):
        global n
        for _ in range(count):
            n += 1
            rec.write({"tick": n, "pad": "y" * 300})
    def fill():  # someone else fills the disk
        fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        try:
            while True:
                os.write(fd, b"z" * 1024)
        except OSError:
            os.close(fd)
    def records():
        return sorted(name for name in os.listdir(disk) if name.startswith("record"))
    out = {}
    fill()
    os.truncate(filler, 24 * 1024)
    write(300)  # about 40 KiB left: the file and three 12 KiB backups do not fit, two do
    out["fitted"] = {"faults": rec.faults.active(), "files": records()}
    fill()
    write(100)  # the disk is full, but rotating reuses the recorder's own room
    out["rotating"] = {"faults": rec.faults.active(), "files": records()}
    for name in records():  # all its room taken by someone else
        os.unlink(os.path.join(disk, name))
    fill()
    write(20)
    out["full"] = {"faults": rec.faults.active(), "files": records()}
    os.unlink(filler)
    write(10)
    out["after"] = rec.faults.active()
    out["last"] = n
    out["contents"] = {}
    for name in records():
        with open(os.path.join(disk, name), "rb") as f:
            out["contents"][name] = f.read().decode()
    print(json.dumps(out))
""")


def test_a_full_disk_keeps_whole_lines_and_recovers(tmp_path: Path) -> None:
    disk = tmp_path / "disk"
    disk.mkdir()
    probe = subprocess.run(["unshare", "-rm", "sh", "-c", f"mount -t tmpfs -o size=64k none {disk}"],
                           capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(f"no private tmpfs here: {probe.stderr.strip()}")
    r = subprocess.run(["unshare", "-rm", "sh", "-c", f'mount -t tmpfs -o size=64k none {disk} && exec "$@"',
                        "sh", sys.executable, "-c", TMPFS_SCRIPT, str(disk)],
                       cwd=REPO, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    # Less room than the backups need: fewer backups, no fault, every tick kept.
    assert out["fitted"] == {"faults": {}, "files": ["record.jsonl", "record.jsonl.1", "record.jsonl.2"]}, r.stderr
    assert out["rotating"] == out["fitted"], r.stderr
    # No room at all: one fault while it lasts, cleared by the first tick written after.
    assert out["full"] == {"faults": {"output record-file": f"{disk}/record.jsonl: No space left on device"},
                           "files": ["record.jsonl"]}, r.stderr
    assert out["after"] == {}
    log = r.stderr.splitlines()
    assert len([line for line in log if "disk full: removed" in line]) == 1
    assert len([line for line in log if line.startswith("ERROR")]) == 1, r.stderr
    assert r.stderr.count("output record-file: recovered") == 1
    text = out["contents"]["record.jsonl"]
    assert text.endswith("\n")
    written = [json.loads(line)["tick"] for line in text.splitlines()]  # every line whole
    assert written[-10:] == list(range(out["last"] - 9, out["last"] + 1))  # written again once there was room
