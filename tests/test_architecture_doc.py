"""doc/architecture.md names only what exists: every path (mom/..., tests/..., doc/...,
contrib/...) is a file or folder of the repository, and every backticked dotted
``mom.x.y`` name is a module or a name defined in one."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "doc" / "architecture.md"

PATH = re.compile(r"(?<![\w./-])((?:mom|tests|doc|contrib|bench)/[\w./-]*[\w/])")
DOTTED = re.compile(r"`(mom(?:\.\w+)+)`")


def test_the_doc_names_paths() -> None:
    assert len(PATH.findall(DOC.read_text())) > 30  # the check below checks something


def test_every_path_in_the_doc_exists() -> None:
    missing = sorted({p for p in PATH.findall(DOC.read_text()) if not (ROOT / p).exists()})
    assert not missing, f"doc/architecture.md names paths that do not exist: {missing}"


def defined(module: Path, name: str) -> bool:
    return re.search(rf"^\s*(class|def)\s+{name}\b|^{name}\s*[:=]", module.read_text(), re.M) is not None


def resolves(dotted: str) -> bool:
    parts = dotted.split(".")
    where = ROOT
    for i, part in enumerate(parts):
        if (where / part).is_dir():
            where = where / part
        elif (where / f"{part}.py").is_file():
            where = where / f"{part}.py"
        elif i == len(parts) - 1 and where.suffix == ".py":
            return defined(where, part)
        else:
            return False
    return True


def test_every_dotted_mom_name_in_the_doc_resolves() -> None:
    names = set(DOTTED.findall(DOC.read_text()))
    unresolved = sorted(n for n in names if not resolves(n))
    assert not unresolved, f"doc/architecture.md names modules that do not exist: {unresolved}"


def test_the_layer_picture_follows_the_layering_test() -> None:
    """The layers drawn under "## Layers" are tests/test_layering.py's LAYERS, top
    down: each line's packages, then (after three or more spaces) what they hold."""
    from tests.test_layering import LAYERS

    text = DOC.read_text()
    start = text.index("```", text.index("## Layers")) + 3
    block = text[start:text.index("```", start)]
    drawn = [set(re.split(r"\s{3,}", line.strip(), maxsplit=1)[0].split()) for line in block.strip().splitlines()]
    assert list(reversed(drawn)) == [set(layer) for layer in LAYERS]
