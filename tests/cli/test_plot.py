"""momctl plot from the flight recorder and from plot-dir of a momd whose test
policy takes SHRINK_MIB from every guest each tick: the PNGs' sizes, and their
pixels show the curves (the balloon falling by the recorded ratio, the host's
stack in the recorded shares)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

from mom.cli import plot
from tests.support.momd import run_momctl

from .conftest import GUESTS, Daemon


def imread(path: str) -> np.ndarray:
    """The image as RGBA floats 0-1."""
    return np.asarray(Image.open(path).convert("RGBA"), dtype=float) / 255


def pixels(path: Path, color: str) -> np.ndarray:
    """A mask of the image's pixels of this colour."""
    image = imread(str(path))[:, :, :3]
    rgb = np.array([int(color[i:i + 2], 16) / 255 for i in (1, 3, 5)])
    return np.all(np.abs(image - rgb) < 0.02, axis=2)


def axis_bottom(path: Path) -> tuple[int, int, int]:
    """The x axis: its row (the lowest row dark across most of the image) and its first
    and last columns (the plot area; the legend is beside it)."""
    image = imread(str(path))[:, :, :3]
    dark = image.sum(axis=2) < 0.6
    row = int(np.nonzero(dark.sum(axis=1) > image.shape[1] * 0.6)[0].max())
    cols = np.nonzero(dark[row])[0]
    return row, int(cols.min()), int(cols.max())


def balloon_heights(path: Path) -> tuple[float, float]:
    """The balloon curve's height above the x axis at its first and last columns."""
    bottom, left, right = axis_bottom(path)
    mask = pixels(path, plot.BALLOON)
    mask[:, :left] = mask[:, right:] = False  # the legend's sample of the line is not the curve
    cols = np.nonzero(mask.any(axis=0))[0]
    first, last = (np.nonzero(mask[:, c])[0].mean() for c in (cols[0] + 2, cols[-1] - 2))
    return bottom - first, bottom - last


def run_plot(source: Path, out: Path) -> list[str]:
    proc = run_momctl(["plot", str(source), "-o", str(out), "--json"])
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def check_guest_chart(path: Path, balloons: list[float]) -> None:
    image = imread(str(path))
    assert image.shape[:2] == (plot.GUEST_SIZE[1] * plot.DPI, plot.GUEST_SIZE[0] * plot.DPI)
    first, last = balloon_heights(path)
    expected = balloons[-1] / balloons[0]
    assert balloons[-1] < balloons[0] and abs(last / first - expected) < 0.03, (first, last, expected)


def test_plot_of_the_record(shrinking: Daemon, tmp_path: Path) -> None:
    shrinking.momd.wait_ticks(60, timeout=30)  # guests have lost a good part of their balloon
    record = tmp_path / "record.jsonl"  # still growing: chart and check one copy
    record.write_text("".join(shrinking.record.read_text().splitlines(keepends=True)[:-1]))
    records = [json.loads(line) for line in record.read_text().splitlines()]
    written = run_plot(record, tmp_path / "out")
    assert sorted(Path(p).name for p in written) == ["guest-vm1.png", "guest-vm2.png", "guest-vm3.png", "host.png"]
    for path in written:
        assert Path(path).stat().st_size > 20_000  # a drawn chart, not an empty canvas

    host_png = tmp_path / "out" / "host.png"
    assert imread(str(host_png)).shape[:2] == (plot.HOST_SIZE[1] * plot.DPI, plot.HOST_SIZE[0] * plot.DPI)
    used, cache, free = (pixels(host_png, c).sum() for c in (plot.USED, plot.CACHE, plot.FREE))
    rows = [r["host"]["statistics"][-1] for r in records]
    free_share = np.mean([r["mem_unused"] / r["mem_available"] for r in rows])
    used_share = np.mean([(r["mem_available"] - r["mem_free"]) / r["mem_available"] for r in rows])
    assert abs(free / (used + cache + free) - free_share) < 0.05, (free, used, cache, free_share)
    assert abs(used / (used + cache + free) - used_share) < 0.05
    assert pixels(host_png, plot.TAKEN).sum() > 20  # the ticks with balloons taken are marked

    for name in GUESTS:
        balloons = [g["statistics"][-1]["balloon_cur"] for r in records for g in r["guests"]
                    if g["properties"]["name"] == name]
        check_guest_chart(tmp_path / "out" / f"guest-{name}.png", balloons)


def test_plot_of_the_plot_dir(shrinking: Daemon, tmp_path: Path) -> None:
    plots = tmp_path / "plots"  # still growing: chart and check one copy
    [folder] = list(shrinking.plot_dir.iterdir())
    shutil.copytree(folder, plots / folder.name)
    written = run_plot(plots, tmp_path / "out")
    assert len(written) == 1 + len(GUESTS)
    series = plot.read_dat(str(plots / folder.name / "vm2.dat"))
    check_guest_chart(tmp_path / "out" / "guest-vm2.png", series.column("balloon_cur"))
    assert pixels(tmp_path / "out" / "host.png", plot.TAKEN).sum() == 0  # plot-dir holds no actions


def test_plot_bad_input_is_one_line(tmp_path: Path) -> None:
    damaged = tmp_path / "damaged.jsonl"
    damaged.write_text('{"tick": 1, "time": 1.0}\n{"tick": 2, "ti')  # a cut last line is skipped
    empty_dir = tmp_path / "empty"
    empty_dir.mkdir()
    bad = tmp_path / "bad.jsonl"
    bad.write_text("hello\n")
    for source, words in [(damaged, "no ticks recorded"), (bad, "bad.jsonl:1: not a record line"),
                          (empty_dir, "neither a plot-dir"), (tmp_path / "missing", "cannot read")]:
        proc = run_momctl(["plot", str(source), "-o", str(tmp_path / "out")])
        assert proc.returncode == 1 and words in proc.stderr and len(proc.stderr.splitlines()) == 1, proc.stderr


def test_a_record_and_its_rotated_file_plot_as_one(shrinking: Daemon, tmp_path: Path) -> None:
    lines = shrinking.record.read_text().splitlines(keepends=True)[:40]
    whole, older, newer = tmp_path / "whole.jsonl", tmp_path / "record.jsonl.1", tmp_path / "record.jsonl"
    whole.write_text("".join(lines))
    older.write_text("".join(lines[:25]))
    newer.write_text("".join(lines[25:]))
    run_plot(whole, tmp_path / "one")
    proc = run_momctl(["plot", str(newer), str(older), "-o", str(tmp_path / "two")])  # any order
    assert proc.returncode == 0, proc.stderr
    for name in ("host.png", "guest-vm1.png"):
        assert np.array_equal(imread(str(tmp_path / "one" / name)), imread(str(tmp_path / "two" / name)))
    proc = run_momctl(["plot", str(newer), str(shrinking.plot_dir), "-o", str(tmp_path / "three")])
    assert proc.returncode == 1 and "give one PLOT_DIR, or record files" in proc.stderr
