"""Reading a package's module graph from its source, for the layout tests:
which modules import which when they are imported (not inside functions,
not under ``if TYPE_CHECKING:``), and which names they take."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules_of(package: Path) -> dict[str, Path]:
    return {module_name(path): path for path in sorted(package.rglob("*.py"))}


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


def targets(
    modules: dict[str, Path], module: str, node: ast.ImportFrom | ast.Import
) -> list[tuple[str, list[str]]]:
    """``(imported module, names)`` pairs of one import statement."""
    if isinstance(node, ast.Import):
        return [(alias.name, []) for alias in node.names]
    source = node.module or ""
    if node.level:  # relative: from the module's package, up level - 1
        base = module if modules[module].name == "__init__.py" else module.rpartition(".")[0]
        for _ in range(node.level - 1):
            base = base.rpartition(".")[0]
        source = f"{base}.{source}" if source else base
    names = [alias.name for alias in node.names]
    # ``from . import pgwire`` imports the module ``pgwire`` (its package is
    # always imported first, by Python, not by this line).
    submodules = [f"{source}.{name}" for name in names if f"{source}.{name}" in modules]
    pairs = [(submodule, []) for submodule in submodules]
    if len(submodules) < len(names):
        pairs.append((source, names))
    return pairs


def import_graph(modules: dict[str, Path]) -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        tree = ast.parse(path.read_text())
        graph[module] = {
            source
            for node in _imports_at_import_time(tree)
            for source, _ in targets(modules, module, node)
            if source in modules and source != module
        }
    return graph


def find_circle(graph: dict[str, set[str]]) -> list[str] | None:
    done: set[str] = set()

    def visit(module: str, path: list[str]) -> list[str] | None:
        if module in path:
            return path[path.index(module) :] + [module]
        if module in done:
            return None
        for imported in sorted(graph[module]):
            found = visit(imported, [*path, module])
            if found:
                return found
        done.add(module)
        return None

    for module in graph:
        found = visit(module, [])
        if found:
            return found
    return None


def private_imports(modules: dict[str, Path]) -> list[str]:
    """``from orca_db... import _name`` across modules."""
    offences = []
    for module, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                for source, names in targets(modules, module, node):
                    private = [n for n in names if n.startswith("_") and not n.startswith("__")]
                    if source.startswith("orca_db") and private:
                        offences.append(f"{module}: from {source} import {', '.join(private)}")
    return offences
