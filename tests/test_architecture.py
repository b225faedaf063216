"""The shape of the library (docs/architecture.md): no import circle among
the modules of ``orca_db`` and ``orca_db_app``, imports inside function
bodies counted; imports deferred to a call only for what is heavy or
optional (``DEFERRED``, each with its reason); a core that never imports its
hosts nor any framework (Django, SQLAlchemy); no private name imported from
one module of ``orca_db`` into another; no module of ``orca_db`` over 300
lines; and no heavy dependency loaded by the backend's import. No database needed."""

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

#: What the retry core is not, by package: the Django host (the engines),
#: the SQLAlchemy host, the Data API transport and the test doubles.
NOT_CORE = ("orca_db.backends", "orca_db.sqlalchemy", "orca_db.data_api", "orca_db.testing")
#: Modules of the Django host that stay at the path users import them from,
#: each for a reason (docs/architecture.md, "Where the line runs").
DJANGO_HOST_MODULES = {
    "orca_db": "the package: `orca_db.retry_atomic`, imported on first use, is the Django host's",
    "orca_db.conf": "OPTIONS['aurora'] read from a DatabaseWrapper, cached per "
    "DATABASES generation (setting_changed); bad values raise ImproperlyConfigured",
    "orca_db.exceptions": "the errors Django users catch (django.db.OperationalError "
    "subclasses), and the table the core raises them through",
    "orca_db.signals": "the retry_event and invocation_finished Django signals, and "
    "the ORCA_DB_OPENTELEMETRY receiver",
    "orca_db.transaction": "retry_atomic, public path; runs transaction.atomic",
    "orca_db.transaction_runs": "retry_atomic's runs: Django's atomic, on_commit "
    "hooks and execute wrappers",
    "orca_db.elsewhere": "what a retry_atomic run sent through Django's other connections",
    "orca_db.aws_lambda": "database_handler, public path: closes Django's connections",
}
#: Everything else in ``orca_db`` is the core (classify, decisions, drivers,
#: retry, backoff, deadlines, session, sql, events, logging, EMF, OTel,
#: options, outcomes, commit resolution, aws: docs/architecture.md).
CORE = {
    name: path
    for name, path in LIBRARY.items()
    if not name.startswith(NOT_CORE) and name not in DJANGO_HOST_MODULES
}
#: What the core must never import, not even inside a function: the layers
#: above it. A transport tells the core what it is through the core's own
#: interfaces (``orca_db.classify.register_transport``, a connection's
#: ``orca_disconnect_errors``), never by being imported; a host hands the
#: core its error table with its settings (``orca_db.outcomes.ErrorTable``).
ABOVE_THE_CORE = (*NOT_CORE, "orca_db_app", *(set(DJANGO_HOST_MODULES) - {"orca_db"}))
#: The frameworks the hosts are written for: the core imports neither.
FRAMEWORKS = ("django", "sqlalchemy")

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
    "pgserver": "optional (orca-db[embedded]): the embedded PostgreSQL's binaries",
    "uvloop": "optional: the simulator's faster event loop when installed",
    "sqlalchemy": "optional (orca-db[sqlalchemy]): the pytest plugin's SQLAlchemy fixtures "
    "load it when a test asks for them",
}
#: Deferred imports the hosts may make too (never the core: see FRAMEWORKS).
HOST_DEFERRED = {
    "django": "read when used, so that a module imports before settings are configured "
    "(the pytest plugin, a Lambda handler's module) and `import orca_db` stays light",
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
    allowed = {**DEFERRED, **HOST_DEFERRED}
    unexplained = {name: sorted(where) for name, where in deferred.items() if name not in allowed}
    assert unexplained == {}


def test_the_core_imports_no_framework():
    """Not Django, not SQLAlchemy, not even inside a function: the core is
    the same for both hosts, which raise its outcomes as their errors."""
    assert {"orca_db.options", "orca_db.outcomes", "orca_db.commit_resolution"} <= set(CORE)
    assert {"orca_db.aws.credentials", "orca_db.otel", "orca_db.deadlines"} <= set(CORE)
    assert importers_of(CORE, FRAMEWORKS) == {}
    # The check sees a framework's import, inside a function too.
    assert importers_of(DJANGO_HOST_MODULES_PATHS, ("django",)).keys() >= {
        "orca_db.conf",
        "orca_db.aws_lambda",
    }


def test_the_sqlalchemy_host_stands_on_the_core_alone():
    """No Django on the SQLAlchemy path (issue 23): the plugin imports
    neither Django nor a module of the Django host (``orca_db.conf``: use
    ``orca_db.options``; ``orca_db.exceptions``: ``orca_db.outcomes``)."""
    sqlalchemy_host = {
        name: path for name, path in LIBRARY.items() if name.startswith("orca_db.sqlalchemy")
    }
    assert "orca_db.sqlalchemy.plugin" in sqlalchemy_host
    django_host = tuple(set(DJANGO_HOST_MODULES) - {"orca_db"})
    assert importers_of(sqlalchemy_host, ("django", "orca_db.backends", *django_host)) == {}


def test_the_data_api_transport_stands_below_both_hosts():
    """The Data API transport (``orca_db.data_api``: the driver, its
    settings, its retrying caller) serves both hosts: it imports the core,
    never a host nor a framework; each host hands it its settings (and with
    them its error table)."""
    transport = {
        name: path for name, path in LIBRARY.items() if name.startswith("orca_db.data_api")
    }
    assert {"orca_db.data_api.settings", "orca_db.data_api.retrying"} <= set(transport)
    hosts = ("orca_db.backends", "orca_db.sqlalchemy", *set(DJANGO_HOST_MODULES) - {"orca_db"})
    assert importers_of(transport, (*FRAMEWORKS, *hosts)) == {}


def test_the_django_host_modules_exist():
    assert set(DJANGO_HOST_MODULES) <= set(LIBRARY)


def test_the_core_never_imports_its_hosts():
    assert {"orca_db.classify", "orca_db.drivers", "orca_db.retry", "orca_db.sql.lexical"} <= set(
        CORE
    )
    assert importers_of(CORE, ABOVE_THE_CORE) == {}


DJANGO_HOST_MODULES_PATHS = {name: LIBRARY[name] for name in DJANGO_HOST_MODULES}


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
