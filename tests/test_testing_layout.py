"""The shape of ``orca_db.testing``: no import circle between its modules,
no private name imported from one module into another, each module
importable alone, the simulator's class defined once however it is started
(``python -m orca_db.testing.simulator`` included), no module over 300 lines.
No database needed."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import orca_db.testing

PACKAGE = Path(orca_db.testing.__file__).resolve().parent
ROOT = PACKAGE.parent.parent


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def _imports_at_import_time(tree: ast.Module):
    """The import statements run when the module is imported: at module
    level, not inside functions or ``if TYPE_CHECKING:``."""
    for node in tree.body:
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        elif isinstance(node, ast.If | ast.Try):
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                continue
            yield from _imports_at_import_time(ast.Module(body=node.body, type_ignores=[]))


def _target(module: str, node: ast.ImportFrom | ast.Import) -> list[tuple[str, list[str]]]:
    """``(imported module, names)`` pairs of one import statement."""
    if isinstance(node, ast.Import):
        return [(alias.name, []) for alias in node.names]
    source = node.module or ""
    if node.level:  # relative: from the module's package, up level - 1
        base = module if MODULES[module].name == "__init__.py" else module.rpartition(".")[0]
        for _ in range(node.level - 1):
            base = base.rpartition(".")[0]
        source = f"{base}.{source}" if source else base
    names = [alias.name for alias in node.names]
    # ``from . import pgwire`` imports the module ``pgwire`` (its package is
    # always imported first, by Python, not by this line).
    submodules = [f"{source}.{name}" for name in names if f"{source}.{name}" in MODULES]
    pairs = [(submodule, []) for submodule in submodules]
    if len(submodules) < len(names):
        pairs.append((source, names))
    return pairs


def import_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for module, path in MODULES.items():
        tree = ast.parse(path.read_text())
        graph[module] = {
            source
            for node in _imports_at_import_time(tree)
            for source, _ in _target(module, node)
            if source in MODULES and source != module
        }
    return graph


def test_no_import_circle():
    graph = import_graph()
    done: set[str] = set()

    def visit(module: str, path: list[str]) -> None:
        if module in path:
            cycle = path[path.index(module) :] + [module]
            raise AssertionError("import circle: " + " -> ".join(cycle))
        if module in done:
            return
        for imported in sorted(graph[module]):
            visit(imported, [*path, module])
        done.add(module)

    for module in graph:
        visit(module, [])
    # The check sees the imports it should.
    assert "orca_db.testing.simulator.session" in graph["orca_db.testing.simulator.proxy"]


def test_no_private_name_imported_across_modules():
    offences = []
    for module, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                for source, names in _target(module, node):
                    private = [n for n in names if n.startswith("_") and n != "__future__"]
                    if source.startswith("orca_db") and private:
                        offences.append(f"{module}: from {source} import {', '.join(private)}")
    assert not offences


@pytest.mark.parametrize("path", MODULES.values(), ids=list(MODULES))
def test_module_is_small(path):
    assert len(path.read_text().splitlines()) <= 300


# Run first in each interpreter: at exit, count the distinct classes named
# AuroraSimulator in every module loaded (``__main__`` included).
COUNT_SIMULATOR_CLASSES_AT_EXIT = """
import atexit, sys

def count():
    found = {
        id(value)
        for module in list(sys.modules.values())
        for value in [getattr(module, "AuroraSimulator", None)]
        if isinstance(value, type)
    }
    print("classes:", len(found))

atexit.register(count)
"""


def _classes_after(code: str) -> int:
    result = subprocess.run(
        [sys.executable, "-c", COUNT_SIMULATOR_CLASSES_AT_EXIT + code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return int(result.stdout.split("classes:")[-1])


@pytest.mark.parametrize("module", [m for m in MODULES if not m.endswith("__main__")])
def test_each_module_imports_alone(module):
    # A fresh interpreter per module: an import circle that only bites in
    # one import order shows up here. Then the public paths: still one class.
    code = (
        f"import importlib\nimportlib.import_module({module!r})\n"
        "import orca_db.testing.simulator, orca_db.testing.pytest_plugin\n"
    )
    assert _classes_after(code) == 1


def test_command_line_entry_defines_the_simulator_once():
    # `python -m orca_db.testing.simulator --help` (runpy's
    # _run_module_as_main is what -m calls), then the plugin's import.
    code = (
        "import runpy, atexit\n"
        "atexit.register(lambda: __import__('orca_db.testing.pytest_plugin'))\n"
        "sys.argv = ['-m', '--help']\n"
        "runpy._run_module_as_main('orca_db.testing.simulator')\n"
    )
    assert _classes_after(code) == 1
