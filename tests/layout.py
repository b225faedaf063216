"""Reading a package's module graph from its source, for the layout tests:
which modules import which, at import time or inside a function body (an
import deferred to a call closes a circle as surely as one at the top; only
``if TYPE_CHECKING:`` blocks, which never run, are left out), and which
names they take."""

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


def _not_type_checking(node: ast.AST) -> bool:
    return not (isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test))


def imports_in(tree: ast.AST, *, function_bodies: bool = True):
    """The import statements of a module that may ever run: at module level,
    and (``function_bodies``) inside functions and methods; never those
    under ``if TYPE_CHECKING:``."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            if function_bodies:
                yield from imports_in(node, function_bodies=True)
        elif _not_type_checking(node):
            yield from imports_in(node, function_bodies=function_bodies)


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


def import_graph(modules: dict[str, Path], *, function_bodies: bool = True) -> dict[str, set[str]]:
    """Module -> the modules of ``modules`` it imports (inside functions
    too, unless ``function_bodies`` is false)."""
    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        tree = ast.parse(path.read_text())
        graph[module] = {
            source
            for node in imports_in(tree, function_bodies=function_bodies)
            for source, _ in targets(modules, module, node)
            if source in modules and source != module
        }
    return graph


def outside_imports(modules: dict[str, Path]) -> dict[str, set[str]]:
    """Top-level name of every module from outside ``modules`` that a
    function body imports -> the modules that do (an import deferred to a
    call, for what is heavy or optional)."""
    found: dict[str, set[str]] = {}
    for module, path in modules.items():
        tree = ast.parse(path.read_text())
        at_import = set(map(id, imports_in(tree, function_bodies=False)))
        for node in imports_in(tree):
            if id(node) in at_import:
                continue
            for source, _ in targets(modules, module, node):
                if source not in modules and not source.startswith(("orca_db.", "orca_db_app.")):
                    found.setdefault(source.split(".")[0], set()).add(module)
    return found


def importers_of(modules: dict[str, Path], prefixes: tuple[str, ...]) -> dict[str, set[str]]:
    """Module -> what it imports (anywhere) whose name is, or is under, one
    of ``prefixes``."""
    found: dict[str, set[str]] = {}
    for module, path in modules.items():
        for node in imports_in(ast.parse(path.read_text())):
            names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else []
            sources = names or [source for source, _ in targets(modules, module, node)]
            for source in sources:
                if any(source == p or source.startswith(p + ".") for p in prefixes):
                    found.setdefault(module, set()).add(source)
    return found


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


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every set of modules that import one another round a circle (the
    strongly connected components of more than one module), sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(module: str) -> None:  # Tarjan's algorithm
        index[module] = low[module] = len(index)
        stack.append(module)
        for imported in sorted(graph.get(module, ())):
            if imported not in index:
                visit(imported)
                low[module] = min(low[module], low[imported])
            elif imported in stack:
                low[module] = min(low[module], index[imported])
        if low[module] == index[module]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == module:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for module in sorted(graph):
        if module not in index:
            visit(module)
    return sorted(found)
