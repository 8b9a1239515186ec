"""MOM's packages import only downward:

    core < policy, sim < hypervisors < collectors, controllers < engine < daemon, rpc < lab < cli

A package may import its own modules and those of lower layers. Packages on
one layer are peers and do not import each other (policy and sim, collectors
and controllers, daemon and rpc), except for the edges in ALLOWED, each with
the reason it exists. Every module under mom/ is parsed; an import counts
wherever it is (inside a function, under TYPE_CHECKING, in a try).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

MOM = Path(__file__).resolve().parents[1] / "mom"

LAYERS: list[tuple[str, ...]] = [
    ("core",),
    ("policy", "sim"),
    ("hypervisors",),
    ("collectors", "controllers"),
    ("engine",),
    ("daemon", "rpc"),
    ("lab",),
    ("cli",),
]
RANK = {package: rank for rank, packages in enumerate(LAYERS) for package in packages}

# (importing module, imported package) -> why the edge is allowed. Keep both short.
BY_DESIGN: dict[tuple[str, str], str] = {
    # The daemon is where momd is put together. It binds the RPC server and the metrics
    # endpoint at construction, so that a socket or port that cannot be had is a
    # DaemonError before anything starts; they get the engine's status and the daemon's
    # Commands, never the daemon itself. rpc never imports daemon.
    ("mom.daemon.daemon", "rpc"): "the daemon builds the RPC and metrics servers",
}
# Known debts, each with its owner, who removes the entry with the import.
DEBT: dict[tuple[str, str], str] = {}
ALLOWED = {**BY_DESIGN, **DEBT}


@dataclass(frozen=True)
class Edge:
    module: str  # the importing module, dotted
    target: str  # the imported module, dotted
    line: int


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports(path: Path, root: Path) -> list[Edge]:
    """Every mom import in the module at path, at any depth."""
    name = module_name(path, root)
    is_package = path.name == "__init__.py"
    tree = ast.parse(path.read_text(), str(path))
    out: list[Edge] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.extend(Edge(name, alias.name, node.lineno) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: from the module's package, up level - 1
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[:len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target == "mom":  # from mom import engine: the subpackage is the target (not __version__)
                out.extend(Edge(name, f"mom.{alias.name}" if alias.name in RANK or (root / alias.name).is_dir()
                                else "mom", node.lineno) for alias in node.names)
            else:
                out.append(Edge(name, target, node.lineno))
    return [e for e in out if e.target == "mom" or e.target.startswith("mom.")]


def package_of(dotted: str) -> str | None:
    """The layer package of a mom module (None: the root package, mom itself)."""
    parts = dotted.split(".")
    return parts[1] if len(parts) > 1 else None


def violations(root: Path, allowed: dict[tuple[str, str], str]) -> list[str]:
    found: list[str] = []
    for path in sorted(root.rglob("*.py")):
        for edge in imports(path, root):
            source, target = package_of(edge.module), package_of(edge.target)
            if source is None or target is None or source == target:
                continue  # mom/__init__.py holds only the version; a package uses itself freely
            if target not in RANK:
                found.append(f"{edge.module}:{edge.line}: {edge.target} is in no layer (add mom.{target} to LAYERS)")
                continue
            if source not in RANK:
                found.append(f"{edge.module}: mom.{source} is in no layer (add it to LAYERS)")
                continue
            if RANK[target] < RANK[source] or (edge.module, target) in allowed:
                continue
            how = "a peer" if RANK[target] == RANK[source] else "a higher layer"
            found.append(f"{edge.module}:{edge.line} imports {edge.target}, {how} ({source} -> {target})")
    return found


def test_packages_import_only_downward() -> None:
    assert violations(MOM, ALLOWED) == []


def test_every_by_design_edge_is_still_needed() -> None:
    """An exception whose import is gone is removed, so the list only shrinks."""
    used = set()
    for path in MOM.rglob("*.py"):
        for edge in imports(path, MOM):
            target = package_of(edge.target)
            if target is not None:
                used.add((edge.module, target))
    assert [key for key in BY_DESIGN if key not in used] == []


def write(root: Path, relative: str, text: str) -> None:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


@pytest.mark.parametrize("module, text, expected", [
    ("core/clock.py", "import mom.engine.status\n", "mom.core.clock:1 imports mom.engine.status, a higher layer"),
    ("policy/lexer.py", "def f():\n    from mom.sim import model\n",
     "mom.policy.lexer:2 imports mom.sim, a peer"),
    ("rpc/api.py", "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from mom.daemon.daemon import Daemon\n",
     "mom.rpc.api:3 imports mom.daemon.daemon, a peer"),
    ("engine/tick.py", "from .. import daemon\n", "mom.engine.tick:1 imports mom.daemon, a higher layer"),
    ("hypervisors/sim.py", "from mom import lab\n", "mom.hypervisors.sim:1 imports mom.lab, a higher layer"),
])
def test_an_upward_import_fails(tmp_path: Path, module: str, text: str, expected: str) -> None:
    root = tmp_path / "mom"
    write(root, "__init__.py", "")
    write(root, module, text)
    found = violations(root, ALLOWED)
    assert len(found) == 1 and found[0].startswith(expected), found


def test_downward_and_own_imports_pass(tmp_path: Path) -> None:
    root = tmp_path / "mom"
    write(root, "cli/momd.py", "import mom.daemon.daemon\nfrom mom.core import clock\nfrom . import top\n")
    write(root, "engine/tick.py", "from mom.engine.status import TickRecord\nfrom mom.policy import compiled\n")
    write(root, "daemon/daemon.py", "from mom.rpc.api import MomApi\n")  # the documented exception
    assert violations(root, ALLOWED) == []
