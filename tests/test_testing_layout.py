"""The shape of ``orca_db.testing``: no import circle between its modules,
no private name imported from one module into another, each module
importable alone, the simulator's class defined once however it is started
(``python -m orca_db.testing.simulator`` included), no module over 300 lines.
No database needed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import orca_db.testing
from tests.layout import ROOT, find_circle, import_graph, modules_of, private_imports

PACKAGE = Path(orca_db.testing.__file__).resolve().parent
MODULES = modules_of(PACKAGE)


def test_no_import_circle():
    graph = import_graph(MODULES)
    assert find_circle(graph) is None
    # The check sees the imports it should.
    assert "orca_db.testing.simulator.session" in graph["orca_db.testing.simulator.proxy"]


def test_no_private_name_imported_across_modules():
    assert not private_imports(MODULES)


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
