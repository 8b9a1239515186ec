"""The configuration schema is the one description of mom.conf: every entry complete,
the loader, the dataclasses, momd --help-config and doc/configuration.md all follow it."""

from __future__ import annotations

import dataclasses
import re
import subprocess
from pathlib import Path

import pytest

from mom.daemon import config_schema
from mom.daemon.config import SECTION_TYPES, Config, ConfigError, load_config
from mom.daemon.config_schema import DEFAULTS, SCHEMA, SECTIONS, Invalid, Setting, parsed_default
from tests.support.momd import MOMD, REPO

REFERENCE = REPO / "doc" / "configuration.md"
PACKAGED_CONFIG = REPO / "doc" / "mom.conf"


def _name(s: Setting) -> str:
    return f"[{s.section}] {s.key}"


@pytest.mark.parametrize("entry", SCHEMA, ids=_name)
def test_every_entry_has_a_parser_that_accepts_its_default_and_help(entry: Setting) -> None:
    assert callable(entry.parse)
    try:
        entry.parse(entry.default)
    except Invalid as e:
        pytest.fail(f"{_name(entry)}: the parser refuses the default {entry.default!r}: {e}")
    # The Type and Meaning cells of a Markdown table row: one line, no cell separator.
    for cell in (entry.kind, entry.help):
        assert cell.strip() and "|" not in cell and "\n" not in cell, f"{_name(entry)}: {cell!r}"
    assert entry.help.endswith("."), f"{_name(entry)}: help is a sentence"
    assert re.fullmatch(r"[a-z][a-z-]*", entry.key)


def test_entries_are_unique_and_keys_lower_case() -> None:
    names = [(s.section, s.key) for s in SCHEMA]
    assert len(names) == len(set(names))
    assert list(DEFAULTS) == list(SECTIONS) == ["main", "logging", "host", "guest", "vdsm", "sim"]


def test_every_dataclass_field_is_filled_by_exactly_one_entry() -> None:
    """A field no entry fills would keep its default whatever the file says; two entries
    for one field would let one silently win."""
    plugin_and_bookkeeping = {"main", "logging", "vdsm", "sim", "collector_settings", "controller_settings",
                              "source", "warnings"}
    targets: dict[str, set[str]] = {section: {f.name for f in dataclasses.fields(cls)}
                                    for section, cls in SECTION_TYPES.items()}
    config_fields = {f.name for f in dataclasses.fields(Config)} - plugin_and_bookkeeping
    filled: dict[str, list[str]] = {}
    for s in SCHEMA:
        if s.field is None:
            continue
        assert s.field in targets.get(s.section, config_fields), f"{_name(s)}: no field {s.field!r}"
        filled.setdefault(f"{s.section}.{s.field}", []).append(s.key)
    assert all(len(keys) == 1 for keys in filled.values()), filled
    expected = {f"{section}.{name}" for section, names in targets.items() for name in names}
    expected |= {f"{s.section}.{s.field}" for s in SCHEMA if s.section not in SECTION_TYPES}
    assert set(filled) == expected
    assert {s.field for s in SCHEMA if s.section not in SECTION_TYPES} == config_fields


def test_dataclass_defaults_are_the_schema_defaults() -> None:
    cfg = Config()
    for s in SCHEMA:
        if s.field is None:
            continue
        holder = getattr(cfg, s.section) if s.section in SECTION_TYPES else cfg
        assert getattr(holder, s.field) == parsed_default(s.section, s.key), _name(s)
    assert load_config(None) == cfg


@pytest.mark.parametrize("entry", [s for s in SCHEMA if len(s.key) > 4], ids=_name)
def test_a_misspelled_key_is_refused_with_the_table_key_suggested(entry: Setting, tmp_path: Path) -> None:
    typo = entry.key[:2] + entry.key[3:]  # one letter dropped
    conf = tmp_path / "mom.conf"
    conf.write_text(f"[{entry.section}]\n{typo}: x\n")
    with pytest.raises(ConfigError) as e:
        load_config(str(conf))
    assert str(e.value) == f"{conf}:2: [{entry.section}] {typo}: unknown key (did you mean {entry.key}?)"


def test_reference_page_tables_are_generated_from_the_schema() -> None:
    page = REFERENCE.read_text()
    assert config_schema.update_reference(page) == page, \
        "doc/configuration.md is stale: python -m mom.daemon.config_schema doc/configuration.md"
    for section in SECTIONS:
        assert "\n".join(config_schema.reference_table(section)) in page


def test_update_reference_rewrites_a_stale_row_and_keeps_the_prose() -> None:
    page = REFERENCE.read_text()
    stale = page.replace("| `rpc-port` | `-1`, port or path | `-1` |", "| `rpc-port` | `-1`, port or path | `8888` |")
    stale = stale.replace("| `speed` | number > 0 | `1` | How much faster than real time the simulated clock runs. |\n",
                          "")
    assert stale != page
    assert config_schema.update_reference(stale) == page


def test_momd_help_config_lists_every_key_with_its_default() -> None:
    r = subprocess.run([*MOMD, "--help-config"], capture_output=True, text=True, timeout=60, cwd=REPO)
    assert r.returncode == 0 and r.stderr == ""
    assert r.stdout == config_schema.help_text()
    section = None
    listed: dict[tuple[str, str], str] = {}
    for line in r.stdout.splitlines():
        header = re.fullmatch(r"\[([a-z]+)\]", line)
        if header:
            section = header.group(1)
        entry = re.fullmatch(r"  ([a-z-]+) = (.*?)    \(.*\)", line)
        if entry and section:
            listed[(section, entry.group(1))] = "" if entry.group(2) == "(empty)" else entry.group(2)
    assert listed == {(s.section, s.key): s.default for s in SCHEMA}
    assert "[Collector: NAME]" in r.stdout and "[Controller: NAME]" in r.stdout


def test_packaged_configuration_shows_defaults_only_as_the_schema_has_them() -> None:
    """doc/mom.conf sets the package's choices; a commented '#key: value' line shows a
    default, and must be the table's."""
    section = None
    shown = 0
    for line in PACKAGED_CONFIG.read_text().splitlines():
        header = re.fullmatch(r"\[([a-z]+)\]", line)
        if header:
            section = header.group(1)
        commented = re.fullmatch(r"#([a-z-]+):\s*(.*)", line)
        if commented and section:
            key, value = commented.groups()
            assert key in DEFAULTS[section], f"[{section}] {key}: not a key"
            assert value.strip() == DEFAULTS[section][key], f"[{section}] {key}: default is {DEFAULTS[section][key]!r}"
            shown += 1
    assert shown > 0
