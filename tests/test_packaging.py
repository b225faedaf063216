"""The package as users install it: the sdist and the wheel built from it
(``python -m build``), the wheel installed with its dependencies from PyPI
into a fresh virtualenv, and a new project made there following README's
Installation section, whose retry-events page must render with its chart.

Before, the wheel shipped no template (no package-data rule): the page
rendered without the chart. Every file of the packages must be in the wheel
(templates, migrations, static files, ``py.typed``), and so must the pytest
plugin's entry point. The wheel is the library and nothing else: the
repository's own project (``orca_db_project``: settings, URLs, WSGI) is not
in it, and still runs ``manage.py aurora_demo`` from a clone as README's
"Try it" says.

Slow (about a minute; pip's cache keeps repeated runs short), marked
``packaging``: CI runs it once as a step of its own (.ci/run).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import pytest
from django.db import connections

from orca_db.testing.postgres import PostgresServer
from tests.orca_helpers import scratch_database

pytestmark = [pytest.mark.slow, pytest.mark.packaging]

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("orca_db", "orca_db_app")
# Not sources: what a checkout gathers as it is used.
IGNORED = shutil.ignore_patterns(
    ".git", ".orca-db", "__pycache__", "*.pyc", "build", "dist", "*.egg-info", ".nox",
    ".mypy_cache", ".ruff_cache", ".pytest_cache", "results", "site", "staticfiles",
)  # fmt: skip


def run(*args: str | Path, cwd: Path, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(
        [str(arg) for arg in args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, f"{args} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def clean_environment() -> dict[str, str]:
    """The environment of a user's shell: nothing of this checkout or of the
    test run (no PYTHONPATH, no Django settings, no database URL)."""
    return {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("ORCA_DB_", "DJANGO_", "PYTHON", "PYTEST", "VIRTUAL_ENV"))
        and key != "DATABASE_URL"
    }


def package_files(root: Path) -> set[str]:
    found = set()
    for package in PACKAGES:
        for path in (root / package).rglob("*"):
            if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
                found.add(path.relative_to(root).as_posix())
    return found


# The settings README's Installation section asks for, added to the settings
# `django-admin startproject` writes: steps 2 and 3.
SETTINGS = """
INSTALLED_APPS += ["orca_db_app"]
DATABASES = {{
    "default": {{
        "ENGINE": "orca_db.backends.aurora",
        "NAME": {name!r}, "USER": {user!r}, "PASSWORD": {password!r}, "HOST": {host!r},
        "PORT": {port!r},
        "OPTIONS": {{"aurora": {{"deadline": 60}}}},
    }}
}}
"""

# Run in the new project: render the retry events' changelist as a staff
# user would see it, and say where everything came from.
RENDER = """
import json, sys
from importlib.metadata import entry_points
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client
from django.test.utils import setup_test_environment
from django.utils import timezone
import orca_db, orca_db_app
from orca_db_app.models import RetryEvent

setup_test_environment()
RetryEvent.objects.create(
    occurred_at=timezone.now(), database="default", phase="execute", error_type="AdminShutdown",
    sqlstate="57P01", attempts=2, outcome="recovered", elapsed_ms=40.0,
)
user = User.objects.create_superuser("operator", "op@example.com", "pw")
client = Client()
client.force_login(user)
response = client.get("/admin/orca_db_app/retryevent/")
with connection.cursor() as cursor:
    cursor.execute("SELECT count(*) FROM pg_namespace WHERE nspname = 'orca'")
    orca_schema = cursor.fetchone()[0]
print(json.dumps({
    "status": response.status_code,
    "html": response.content.decode(),
    "orca_db": orca_db.__file__,
    "orca_db_app": orca_db_app.__file__,
    "pytest11": sorted(e.value for e in entry_points(group="pytest11")),
    "orca_schema": orca_schema,
}))
"""


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Path, Path]:
    """(a copy of the sources, the wheel built from them): the sdist, then
    the wheel from the sdist, as `python -m build` does; the checkout stays
    untouched."""
    tmp_path = tmp_path_factory.mktemp("build")
    source = tmp_path / "source"
    shutil.copytree(ROOT, source, ignore=IGNORED)
    dist = tmp_path / "dist"
    run(sys.executable, "-m", "build", "--outdir", dist, source, cwd=tmp_path)
    (wheel,) = dist.glob("*.whl")
    (sdist,) = dist.glob("*.tar.gz")
    assert sdist.name.startswith("orca_db-")
    return source, wheel


def test_the_wheel_installs_and_renders_the_chart(tmp_path, django_db_blocker, built):
    readme = (ROOT / "README.md").read_text()
    installation = readme.split("## Installation", 1)[1].split("\n## ", 1)[0]
    # What this test follows must still be what README says.
    assert 'python -m pip install "orca-db[django,psycopg]"' in installation
    assert '"ENGINE": "orca_db.backends.aurora"' in installation
    assert 'Add `"orca_db_app"` to `INSTALLED_APPS`' in installation
    assert "python manage.py migrate" in installation

    # 1. Built from a copy of the sources (the fixture).
    source, wheel = built

    # 2. Every file of the packages is in the wheel.
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        entry_points_txt = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
        assert "orca_db.testing.pytest_plugin" in archive.read(entry_points_txt).decode()
    expected = package_files(source)
    assert {
        "orca_db/py.typed",
        "orca_db/sql/pg_catalog.txt",
        "orca_db_app/py.typed",
        "orca_db_app/templates/admin/orca_db_app/retryevent/change_list.html",
        "orca_db_app/migrations/0001_initial.py",
    } <= expected
    assert expected - names == set()
    # ... and nothing else: no demo project, no file of the checkout.
    (dist_info,) = {name.split("/")[0] for name in names if ".dist-info/" in name}
    assert {name for name in names if not name.startswith(dist_info)} == expected
    assert {name.split("/")[0] for name in names} == {"orca_db", "orca_db_app", dist_info}
    for project_module in ("settings.py", "urls.py", "wsgi.py", "project/__init__.py"):
        assert f"orca_db/{project_module}" not in names
    with zipfile.ZipFile(wheel) as archive:
        metadata = archive.read(f"{dist_info}/METADATA").decode()
    project_urls = dict(re.findall(r"^Project-URL: ([^,]+), (\S+)$", metadata, re.M))
    assert set(project_urls) == {"Documentation", "Source", "Changelog", "Issues"}

    # 3. A fresh virtualenv (no system site-packages), the wheel and its
    # dependencies from PyPI (README step 1; pip's cache is reused).
    venv = tmp_path / "venv"
    env = clean_environment()
    run(sys.executable, "-m", "venv", venv, cwd=tmp_path, env=env)
    python = venv / "bin" / "python"
    extra = "psycopg2" if os.environ.get("ORCA_DB_DRIVER") == "psycopg2" else "psycopg"
    run(
        python, "-m", "pip", "install", "-q", "--disable-pip-version-check",
        f"{wheel}[django,{extra}]", cwd=tmp_path, env=env,
    )  # fmt: skip

    # 4. A new project on a new database (README steps 2 and 3).
    project = tmp_path / "project"
    project.mkdir()
    run(venv / "bin" / "django-admin", "startproject", "mysite", project, cwd=tmp_path, env=env)
    with scratch_database(django_db_blocker, prefix="orca_wheel") as alias:
        database = connections[alias].settings_dict
        settings_py = project / "mysite" / "settings.py"
        settings_py.write_text(
            settings_py.read_text()
            + SETTINGS.format(
                name=database["NAME"],
                user=database["USER"],
                password=database["PASSWORD"],
                host=database["HOST"] or "localhost",
                port=str(database["PORT"]),
            )
        )
        manage = [python, "manage.py"]
        run(*manage, "migrate", "-v", "0", cwd=project, env=env)
        run(*manage, "check", "--fail-level", "WARNING", cwd=project, env=env)
        awake = run(*manage, "aurora_wake", "--timeout", "10", cwd=project, env=env)
        assert "Database 'default' is awake" in awake
        result = json.loads(run(*manage, "shell", "-v", "0", "-c", RENDER, cwd=project, env=env))

    # Everything came from the installed copy, not from this checkout.
    site_packages = str(venv / "lib")
    assert result["orca_db"].startswith(site_packages)
    assert result["orca_db_app"].startswith(site_packages)
    assert "orca_db.testing.pytest_plugin" in result["pytest11"]
    # The retry events page, with its chart (the template from the wheel).
    assert result["status"] == 200
    chart = result["html"].split('<div id="retry-chart"', 1)
    assert len(chart) == 2, "the chart is missing"
    assert re.search(r"<svg[^>]*>.*<rect class=\"recovered\"", chart[1], re.S)
    # orca_db_app alone: no ORCA schema in the user's database.
    assert result["orca_schema"] == 0


# Run in the SQLAlchemy virtualenv: a bad setting is refused by the plugin
# (found through its entry point), an engine with it answers, and Django is
# neither installed nor loaded; the Django engine's import names the extra.
SQLALCHEMY_PROGRAM = """
import json, sys
from importlib.metadata import distributions
import orca_db
from sqlalchemy import create_engine, exc, text

target = sys.argv[1]
try:
    create_engine(target, plugins=["orca_db"], aurora={"deadline": "soon"})
except exc.ArgumentError as error:
    refused = str(error)
engine = create_engine(target, plugins=["orca_db"], aurora={"deadline": 30})
with engine.begin() as connection:
    answer = connection.execute(text("SELECT 1")).scalar()
engine.dispose()
loaded = sorted(name for name in sys.modules if name.split(".")[0] == "django")
try:
    import orca_db.backends.aurora
    engine_import = "imported"
except ImportError as error:
    engine_import = str(error)
print(json.dumps({
    "orca_db": orca_db.__file__, "refused": refused, "answer": answer, "loaded": loaded,
    "installed": sorted(d.metadata["Name"].lower() for d in distributions()),
    "engine_import": engine_import,
}))
"""


def test_a_sqlalchemy_install_brings_no_django(tmp_path, built):
    """README, "With SQLAlchemy": the wheel with the `sqlalchemy` and
    `psycopg2` extras installs no Django (an extra of its own, `django`),
    and the engine plugin works from it."""
    readme = (ROOT / "README.md").read_text()
    installation = readme.split("## Installation", 1)[1].split("\n## ", 1)[0]
    assert 'python -m pip install "orca-db[sqlalchemy,psycopg2]"' in installation

    _, wheel = built
    # A virtualenv without pip of its own (this pip installs into it: a few
    # seconds less), bytecode left to the imports.
    venv = tmp_path / "venv"
    env = clean_environment()
    run(sys.executable, "-m", "venv", "--without-pip", venv, cwd=tmp_path, env=env)
    python = venv / "bin" / "python"
    run(
        sys.executable, "-m", "pip", "--python", python, "install", "-q", "--no-compile",
        "--disable-pip-version-check", f"{wheel}[sqlalchemy,psycopg2]", cwd=tmp_path, env=env,
    )  # fmt: skip

    from sqlalchemy import URL

    settings = connections["default"].settings_dict
    target = URL.create(
        "postgresql+psycopg2",
        username=settings["USER"],
        password=settings["PASSWORD"],
        host=settings["HOST"] or "localhost",
        port=int(settings["PORT"]),
        database="postgres",
    ).render_as_string(hide_password=False)
    result = json.loads(run(python, "-c", SQLALCHEMY_PROGRAM, target, cwd=tmp_path, env=env))
    # The core, SQLAlchemy (and what it needs) and the driver: no Django,
    # nor its own dependencies.
    assert set(result["installed"]) - {"typing-extensions", "typing_extensions", "greenlet"} == {
        "orca-db", "pglast", "psycopg2-binary", "python-json-logger", "sqlalchemy", "tenacity",
    }  # fmt: skip
    assert result["orca_db"].startswith(str(venv / "lib"))
    assert "'deadline'" in result["refused"]
    assert result["answer"] == 1
    assert result["loaded"] == []
    assert 'pip install "orca-db[django]"' in result["engine_import"]


def test_the_demo_runs_from_a_clone(tmp_path):
    """README's "Try it": in a clone (here a copy of the sources, with this
    environment's requirements/dev.txt installed), ``python manage.py
    aurora_demo`` runs on an embedded server with nothing configured: the
    project the wheel leaves out is where manage.py finds it."""
    readme = (ROOT / "README.md").read_text()
    try_it = readme.split("## Try it", 1)[1].split("\n## ", 1)[0]
    assert "python manage.py aurora_demo --duration 30" in try_it
    clone = tmp_path / "clone"
    shutil.copytree(ROOT, clone, ignore=IGNORED)
    # Directly under /tmp: as root, the server runs as another user, who
    # cannot enter pytest's private tmp_path.
    embedded = Path(tempfile.mkdtemp(prefix="orca-db-clone-test-"))
    env = {**clean_environment(), "ORCA_DB_EMBEDDED_DIR": str(embedded)}
    manage = [sys.executable, "manage.py"]
    try:
        where = run(
            *manage, "shell", "-v", "0", "-c",
            "import orca_db, orca_db_project; print(orca_db.__file__, orca_db_project.__file__)",
            cwd=clone, env=env,
        )  # fmt: skip
        report = run(*manage, "aurora_demo", "--duration", "3", "--seed", "7", cwd=clone, env=env)
    finally:
        PostgresServer(base=embedded).stop("immediate")
        shutil.rmtree(embedded, ignore_errors=True)
    # The clone's own packages, not an installed copy.
    assert [Path(path).parent.parent for path in where.split()] == [clone, clone]
    assert "RESULT: PASS" in report
    assert re.search(r"^  duplicates: 0$", report, re.M)


def test_the_demo_extra_is_light_and_the_embedded_server_stops(tmp_path, built):
    """README "Try it": the `demo` extra (a driver, the embedded server,
    DATABASE_URL's parser; no development tools) runs the project on its
    embedded PostgreSQL, and the one documented command stops it, as root
    too (the server and its pg_ctl run as an unprivileged user)."""
    readme = (ROOT / "README.md").read_text()
    try_it = readme.split("## Try it", 1)[1].split("\n## ", 1)[0]
    assert 'python -m pip install -e ".[demo]"' in try_it
    assert "python -m orca_db.testing.embedded stop" in try_it

    source, wheel = built
    venv = tmp_path / "venv"
    env = clean_environment()
    run(sys.executable, "-m", "venv", venv, cwd=tmp_path, env=env)
    python = venv / "bin" / "python"
    run(
        python, "-m", "pip", "install", "-q", "--disable-pip-version-check",
        f"{wheel}[demo]", cwd=tmp_path, env=env,
    )  # fmt: skip
    installed = json.loads(run(python, "-m", "pip", "list", "--format", "json", cwd=tmp_path))
    names = {package["name"].lower() for package in installed}
    assert {"django", "psycopg", "dj-database-url", "orca-db"} <= names
    # pgserver has no wheel for Python 3.13: the machine's PostgreSQL serves.
    assert ("pgserver" in names) is (sys.version_info < (3, 13))
    assert not names & {"ruff", "mypy", "playwright", "moto", "nox", "pytest", "boto3"}
    assert len(names) <= 25, sorted(names)

    # The project from the clone (manage.py) on the embedded server, in a
    # directory the unprivileged user can reach (as root).
    state = Path(tempfile.mkdtemp(prefix="orca-db-try-it-"))
    env["ORCA_DB_EMBEDDED_DIR"] = str(state)
    embedded = [python, "-m", "orca_db.testing.embedded"]
    try:
        run(python, source / "manage.py", "migrate", "-v", "0", cwd=tmp_path, env=env)
        status = run(*embedded, "status", cwd=tmp_path, env=env)
        assert "is running" in status
        port = int(re.search(r"127\.0\.0\.1:(\d+)", status).group(1))
        stopped = run(*embedded, "stop", cwd=tmp_path, env=env)
        assert f"Stopped the embedded PostgreSQL in {state.resolve()} (127.0.0.1:{port})" in (
            stopped
        )
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", port), 1).close()
        after = subprocess.run(
            [*map(str, embedded), "status"], cwd=tmp_path, env=env, capture_output=True, text=True
        )
        assert after.returncode == 1 and "is stopped" in after.stdout
    finally:
        PostgresServer(base=state).stop("immediate")
        shutil.rmtree(state, ignore_errors=True)
