"""The shape of the library (docs/architecture.md): no import circle among
the modules of ``orca_db`` and ``orca_db_app``, imports inside function
bodies counted; imports deferred to a call only for what is heavy or
optional (``DEFERRED``, each with its reason); a core that never imports its
hosts; no private name imported from one module of ``orca_db`` into
another; no module of ``orca_db`` over 300 lines; and no heavy dependency
loaded by the backend's import. No database needed."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.layout import (
    ROOT,
    circles,
    find_circle,
    import_graph,
    importers_of,
    modules_of,
    outside_imports,
    private_imports,
)

LIBRARY = modules_of(ROOT / "orca_db")
APP = modules_of(ROOT / "orca_db_app")
BOTH = {**LIBRARY, **APP}

#: What the retry core is not: the Django host (the engines), the Data API
#: transport and the test doubles. Everything else in ``orca_db`` is the
#: core (classify, decisions, drivers, retry, backoff, deadlines, session,
#: sql, events, logging, conf, exceptions, ...: docs/architecture.md).
NOT_CORE = ("orca_db.backends", "orca_db.data_api", "orca_db.testing")
CORE = {name: path for name, path in LIBRARY.items() if not name.startswith(NOT_CORE)}
#: What the core must never import, not even inside a function: the layers
#: above it. A transport tells the core what it is through the core's own
#: interfaces (``orca_db.classify.register_transport``, a connection's
#: ``orca_disconnect_errors``), never by being imported.
ABOVE_THE_CORE = ("orca_db.data_api", "orca_db.backends", "orca_db.testing", "orca_db_app")

#: Modules from outside that a function body may import, and why each is
#: deferred to a call rather than imported with its module. Anything else
#: (the standard library included) is imported at the top.
DEFERRED = {
    "pglast": "PostgreSQL's parser (a C extension, tens of ms): only a statement "
    "the lexer cannot settle, after a failure or for session state, is parsed",
    "tenacity": "the retry engine: loaded by the first failure, not by a cold start",
    "boto3": "optional (orca-db[aws], [data-api]); half a second of a Lambda cold start",
    "botocore": "comes with boto3, for the same reasons",
    "opentelemetry": "optional (orca-db[otel]), and only with ORCA_DB_OPENTELEMETRY",
    "psycopg": "a driver: only the one in use is installed or loaded",
    "psycopg2": "a driver: only the one in use is installed or loaded",
    "django": "read when used, so that a module imports before settings are configured "
    "(the pytest plugin, a Lambda handler's module) and `import orca_db` stays light",
    "pgserver": "optional (orca-db[embedded]): the embedded PostgreSQL's binaries",
    "uvloop": "optional: the simulator's faster event loop when installed",
    "sqlalchemy": "optional (orca-db[sqlalchemy]): the pytest plugin's SQLAlchemy fixtures "
    "load it when a test asks for them",
}


def test_no_import_circle_counting_function_bodies():
    assert circles(import_graph(BOTH)) == []


@pytest.mark.parametrize("package", [LIBRARY, APP], ids=["orca_db", "orca_db_app"])
def test_no_import_circle_at_import_time(package):
    assert find_circle(import_graph(package, function_bodies=False)) is None


def test_the_graph_is_read():
    graph = import_graph(LIBRARY)
    assert "orca_db.drivers" in graph["orca_db.backends.cursor"]
    assert "orca_db.retry" in graph["orca_db.transaction"]
    # Inside a function body: read only when a failure asks for it.
    assert "orca_db.sql" in graph["orca_db.decisions"]
    assert "orca_db.sql" not in import_graph(LIBRARY, function_bodies=False)["orca_db.session"]
    assert "orca_db.sql" in graph["orca_db.session"]


def test_the_circle_check_finds_circles():
    assert find_circle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_circle({"a": {"b"}, "b": set()}) is None
    graph = {"a": {"b"}, "b": {"a", "c"}, "c": {"d"}, "d": {"c"}, "e": {"a"}}
    assert circles(graph) == [["a", "b"], ["c", "d"]]
    assert circles({"a": {"b"}, "b": set()}) == []


def test_imports_deferred_to_a_call_are_heavy_or_optional():
    deferred = outside_imports(BOTH)
    assert "pglast" in deferred  # the check sees them
    unexplained = {name: sorted(where) for name, where in deferred.items() if name not in DEFERRED}
    assert unexplained == {}


def test_the_core_never_imports_its_hosts():
    assert {"orca_db.classify", "orca_db.drivers", "orca_db.retry", "orca_db.sql.lexical"} <= set(
        CORE
    )
    assert importers_of(CORE, ABOVE_THE_CORE) == {}


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
