"""Imports in `mosam_train/` point down the layers (DESIGN.md, README "Layout").

Every `import` / `from ... import` statement counts, wherever it is: module level, inside a
function, under `if TYPE_CHECKING:`. Strings that name a module (registries such as
``"mosam_train.data.formats.davis:read_davis"``, Hydra ``_target_``s) are not imports and
are not checked: they are resolved by whoever looks them up, at run time.

A module may import its own unit (the top-level package or module it belongs to) and any
unit of a lower layer. Units of the same layer are siblings and never import each other,
except in the two open layers: the small neutral modules of layer 0 build on one another
(optical flow reads RAFT weights with `checkpoint_files`), and the top layer is the tasks
with their helpers (`tasks` calls `runs` and `preflight`).

Run against another checkout: ``python tests/test_layers.py ROOT`` prints what it finds.
"""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE = "mosam_train"

# Every unit of mosam_train/ (a top-level module, or a subpackage) and its layer. A new
# top-level module or subpackage must be added here: the test fails until it is.
LAYERS: dict[str, int] = {
    # 0: neutral IO and constants, importable from every layer
    "__init__": 0,  # mosam_train/__init__.py: a docstring, imports nothing
    "atomic_files": 0,
    "assets": 0,  # shipped weights files (models/shipped.py finds them); no code
    "checkpoint_files": 0,
    "dataset_files": 0,
    "errors": 0,
    "images": 0,
    "optical_flow": 0,
    "palette": 0,
    "registry": 0,
    # 1: siblings
    "data": 1,
    "metrics": 1,
    "models": 1,
    # 2..4
    "inference": 2,
    "trackers": 3,
    "lit": 4,
    # 5: what the entry points call, and its helpers
    "bench": 5,
    "preflight": 5,
    "runs": 5,
    "startup": 5,
    "sweeps": 5,
    "tasks": 5,
    "integrations": 5,
}
OPEN_LAYERS = frozenset({0, 5})  # layers whose units may import each other


@dataclass(frozen=True)
class Import:
    path: str  # as reported: relative to the checked root
    line: int
    module: str  # the importing module, dotted
    target: str  # the imported module, dotted


def unit_of(module: str) -> str:
    """`mosam_train.data.formats.davis` -> `data`; the package itself -> `__init__`."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _resolve(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    if not node.level:
        return node.module or ""
    package = module.split(".") if is_package else module.split(".")[:-1]
    base = package[: len(package) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imports_of(
    source: str, path: str, module: str, is_package: bool, units: set[str]
) -> list[Import]:
    """Every import of a `mosam_train` module in `source` (the code of `module`).

    `from mosam_train import x` imports unit `x` when `x` is one of `units`, else the
    package itself.
    """
    found = []
    for node in ast.walk(ast.parse(source, path)):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(node, module, is_package)
            if base == PACKAGE:
                targets = [
                    f"{PACKAGE}.{a.name}" if a.name in units else PACKAGE for a in node.names
                ]
            else:
                targets = [base]
        else:
            continue
        found += [
            Import(path, node.lineno, module, t)
            for t in targets
            if t == PACKAGE or t.startswith(PACKAGE + ".")
        ]
    return found


def violation(imp: Import) -> str | None:
    """The report line for an import that points up or sideways, else None."""
    src, dst = unit_of(imp.module), unit_of(imp.target)
    a, b = LAYERS[src], LAYERS[dst]
    if src == dst or b < a or (a == b and a in OPEN_LAYERS):
        return None
    direction = "up" if b > a else "sideways"
    return (
        f"{imp.path}:{imp.line} imports {imp.module} (layer {a}) -> {imp.target} "
        f"(layer {b}): {direction}"
    )


def _modules(root: Path) -> list[tuple[Path, str, bool]]:
    """(file, dotted module name, is a package __init__) of every .py under the package."""
    out = []
    for path in sorted((root / PACKAGE).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        out.append((path, ".".join(parts[:-1] if is_package else parts), is_package))
    return out


def check_tree(root: Path) -> list[str]:
    """Problems in the `mosam_train/` under `root`: unmapped units, then bad imports."""
    modules = _modules(root)
    units = {unit_of(m) for _, m, _ in modules}
    problems = [
        f"{PACKAGE}/{u}: not in LAYERS of tests/test_layers.py. Fix: add it with its layer."
        for u in sorted(units - LAYERS.keys())
    ]
    for path, module, is_package in modules:
        if unit_of(module) not in LAYERS:
            continue  # reported above
        rel = str(path.relative_to(root))
        for imp in imports_of(path.read_text(), rel, module, is_package, units):
            if unit_of(imp.target) not in LAYERS:
                problems.append(f"{rel}:{imp.line} imports {imp.target}: unit not in LAYERS")
            elif (line := violation(imp)) is not None:
                problems.append(line)
    return problems


def test_imports_point_down_the_layers():
    problems = check_tree(REPO)
    assert not problems, "imports against the layer order:\n" + "\n".join(problems)


def _check_source(source: str, module: str = "mosam_train.data.reader") -> list[str]:
    imps = imports_of(source, "x.py", module, False, set(LAYERS))
    return [v for v in map(violation, imps) if v is not None]


def test_checker_flags_imports_up_and_sideways_wherever_they_are():
    source = """
from typing import TYPE_CHECKING

import numpy as np

from mosam_train.errors import DataError
from mosam_train.data.video import VideoRecord
from . import sampling

if TYPE_CHECKING:
    from mosam_train.inference.engine import Engine

def f():
    import mosam_train.lit.module
    from ..metrics import jf
    from mosam_train import tasks, palette
"""
    assert [v.split(" imports ")[0] for v in _check_source(source)] == [
        "x.py:11",  # TYPE_CHECKING: inference
        "x.py:14",  # in a function: lit
        "x.py:15",  # relative, sideways: metrics
        "x.py:16",  # `from mosam_train import tasks`
    ]
    assert _check_source(source)[2] == (
        "x.py:15 imports mosam_train.data.reader (layer 1) -> mosam_train.metrics "
        "(layer 1): sideways"
    )


def test_checker_ignores_module_names_in_strings_and_allows_open_layers():
    registry = """
from importlib import import_module

READERS = {"lit": "mosam_train.lit.module:MoSAMModule"}
reader = import_module("mosam_train.tasks")
"""
    assert _check_source(registry) == []
    assert _check_source("from mosam_train import images", "mosam_train.optical_flow") == []
    assert _check_source("from mosam_train import runs", "mosam_train.tasks") == []


def test_checker_asks_for_unmapped_units(tmp_path):
    pkg = tmp_path / PACKAGE
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "newthing.py").write_text("from mosam_train import errors\n")
    assert check_tree(tmp_path) == [
        f"{PACKAGE}/newthing: not in LAYERS of tests/test_layers.py. Fix: add it with its layer."
    ]


if __name__ == "__main__":
    found = check_tree(Path(sys.argv[1]) if len(sys.argv) > 1 else REPO)
    print("\n".join(found) or "no import against the layer order")
    sys.exit(1 if found else 0)
