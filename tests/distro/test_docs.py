"""The reference pages agree with the code: every configuration key with its default
(doc/configuration.md), mom.conf(5) generated from it, the man pages render."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys

import pytest

from mom.daemon.config import DEFAULTS
from tests.support.momd import REPO

CONFIGURATION = REPO / "doc" / "configuration.md"
MAN_DIR = REPO / "doc" / "man"
GENERATOR = REPO / "packaging" / "gen-mom-conf-man.py"


def documented_keys() -> dict[str, dict[str, str]]:
    """section -> key -> default as written in the page's tables ('' for *(empty)*)."""
    out: dict[str, dict[str, str]] = {}
    section = None
    for line in CONFIGURATION.read_text().splitlines():
        heading = re.fullmatch(r"## \[([a-z]+)\]", line.strip())
        if heading:
            section = heading.group(1)
            out[section] = {}
            continue
        if line.startswith("## "):
            section = None
        row = re.fullmatch(r"\| `([a-z-]+)` \|[^|]*\| (`([^`]*)`|\*\(empty\)\*) \|.*\|", line.strip())
        if row and section is not None:
            assert row.group(1) not in out[section], f"[{section}] {row.group(1)} documented twice"
            out[section][row.group(1)] = row.group(3) or ""
    return out


def test_every_configuration_key_is_documented_with_its_default() -> None:
    documented = documented_keys()
    assert set(documented) == set(DEFAULTS), "sections differ"
    for section, keys in DEFAULTS.items():
        assert set(documented[section]) == set(keys), (
            f"[{section}]: not documented {sorted(set(keys) - set(documented[section]))}, "
            f"documented but unknown {sorted(set(documented[section]) - set(keys))}")
        for key, default in keys.items():
            assert documented[section][key] == default, f"[{section}] {key}: default {default!r}"


def test_mom_conf_man_page_is_generated_from_the_reference() -> None:
    generated = subprocess.run([sys.executable, str(GENERATOR), str(CONFIGURATION)], capture_output=True,
                               text=True, check=True).stdout
    assert (MAN_DIR / "mom.conf.5").read_text() == generated, \
        "doc/man/mom.conf.5 is stale: packaging/gen-mom-conf-man.py > doc/man/mom.conf.5"
    for keys in DEFAULTS.values():
        for key in keys:
            assert key.replace("-", "\\-") in generated


@pytest.mark.parametrize("page", ["momd.8", "momctl.1", "mom.conf.5"])
def test_man_page_renders_without_warnings(page: str) -> None:
    if shutil.which("groff") is None:
        pytest.skip("groff is not installed")
    r = subprocess.run(["groff", "-man", "-Tutf8", "-ww", "-P-cbou", str(MAN_DIR / page)], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0 and r.stderr == "", r.stderr
    assert "NAME" in r.stdout and "SEE ALSO" in r.stdout


METRICS_DOC = REPO / "doc" / "metrics.md"
METRICS_CODE = REPO / "mom" / "rpc" / "metrics.py"


def test_every_metric_is_documented_and_no_other() -> None:
    """Names in the code ("mom_x", counters exposed as mom_x_total) against the page's tables."""
    in_code = set(re.findall(r'"(mom_[a-z_]+)"', METRICS_CODE.read_text()))
    documented = set(re.findall(r"^\| `(mom_[a-z_]+)` \|", METRICS_DOC.read_text(), re.M))
    base = {name.removesuffix("_total") for name in documented}
    assert in_code - base == set(), f"metrics not in doc/metrics.md: {sorted(in_code - base)}"
    assert base - in_code == set(), f"doc/metrics.md names metrics the code does not have: {sorted(base - in_code)}"
