"""The shape of the library (docs/architecture.md): no import circle in
``orca_db`` or ``orca_db_app``, no private name imported from one module of
``orca_db`` into another, no module of ``orca_db`` over 300 lines, and no
heavy dependency loaded by the backend's import. No database needed."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.layout import ROOT, find_circle, import_graph, modules_of, private_imports

LIBRARY = modules_of(ROOT / "orca_db")
APP = modules_of(ROOT / "orca_db_app")


@pytest.mark.parametrize("package", [LIBRARY, APP], ids=["orca_db", "orca_db_app"])
def test_no_import_circle(package):
    graph = import_graph(package)
    assert find_circle(graph) is None


def test_the_graph_is_read():
    graph = import_graph(LIBRARY)
    assert "orca_db.drivers" in graph["orca_db.backends.cursor"]
    assert "orca_db.retry" in graph["orca_db.transaction"]


def test_the_circle_check_finds_circles():
    assert find_circle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_circle({"a": {"b"}, "b": set()}) is None


def test_no_private_name_imported_across_modules():
    assert not private_imports(LIBRARY)


@pytest.mark.parametrize("path", LIBRARY.values(), ids=list(LIBRARY))
def test_library_module_is_small(path):
    assert len(path.read_text().splitlines()) <= 300


def test_the_backend_loads_no_heavy_dependency():
    """A Lambda cold start imports the engine: pglast, tenacity, boto3 and
    OpenTelemetry load only when a failure (or a setting) needs them."""
    code = (
        "import sys, django\n"
        "from django.conf import settings\n"
        "settings.configure()\n"
        "import orca_db.backends.aurora.base, orca_db.aws_lambda, orca_db.transaction\n"
        "heavy = ('pglast', 'tenacity', 'boto3', 'botocore', 'opentelemetry')\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
