"""The layout holds: imports run one way (the application → callbacks and datamodules → lightning_modules),
no module imports itself through a cycle, and no file grows past about 350 lines.

Parsed from the source (every ``import``, also inside functions), so a new file is checked without being run.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: a package may import only packages of a lower layer (and itself); scripts sit above everything
LAYER = {"lightning_modules": 0, "callbacks": 1, "datamodules": 1, "coupled": 2, "scripts": 3}
MAX_LINES = 350


def _modules() -> dict[str, Path]:
    out = {}
    for package in LAYER:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = path
    return out


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The project modules `name` imports (``from pkg import mod`` counts as ``pkg.mod`` when that is one)."""
    is_package = path.name == "__init__.py"
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = name.split(".")
                anchor = anchor if is_package else anchor[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        else:
            continue
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


MODULES = _modules()
GRAPH = {name: _imports(name, path, set(MODULES)) for name, path in MODULES.items()}


def _package(module: str) -> str:
    return module.split(".")[0]


def test_every_package_is_parsed():
    assert {_package(m) for m in MODULES} == set(LAYER)
    assert GRAPH["coupled.cli"] >= {"coupled.arguments", "lightning_modules.learner"}  # the parser sees imports


def test_imports_run_one_way():
    wrong = sorted(
        f"{module} imports {target}"
        for module, targets in GRAPH.items()
        for target in targets
        if _package(target) != _package(module) and LAYER[_package(target)] >= LAYER[_package(module)]
    )
    assert not wrong, "imports against the layer order (application → callbacks, datamodules → lightning_modules): " \
        + "; ".join(wrong)


def test_no_import_cycles():
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    cycles = []

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for target in sorted(GRAPH[module]):
            if state.get(target) == 1:
                cycles.append(" → ".join([*path[path.index(target):], target]))
            elif target not in state:
                visit(target, [*path, target])
        state[module] = 2

    for module in sorted(GRAPH):
        if module not in state:
            visit(module, [module])
    assert not cycles, "import cycles: " + "; ".join(cycles)


def test_a_cycle_and_a_wrong_way_import_are_caught(tmp_path):
    """The checks can fail: a made-up package tree with one of each."""
    (tmp_path / "lightning_modules").mkdir()
    (tmp_path / "lightning_modules" / "a.py").write_text("from coupled import cli\n")
    (tmp_path / "coupled").mkdir()
    (tmp_path / "coupled" / "cli.py").write_text("from . import main\n")
    (tmp_path / "coupled" / "main.py").write_text("def f():\n    from coupled.cli import x\n")
    known = {"lightning_modules.a", "coupled.cli", "coupled.main", "coupled"}
    assert _imports("lightning_modules.a", tmp_path / "lightning_modules" / "a.py", known) == {"coupled.cli"}
    assert _imports("coupled.cli", tmp_path / "coupled" / "cli.py", known) == {"coupled.main"}
    assert _imports("coupled.main", tmp_path / "coupled" / "main.py", known) == {"coupled.cli"}


@pytest.mark.parametrize("module", sorted(MODULES))
def test_files_stay_short(module):
    lines = len(MODULES[module].read_text().splitlines())
    assert lines <= MAX_LINES, f"{MODULES[module].relative_to(ROOT)} has {lines} lines: split it by job"
