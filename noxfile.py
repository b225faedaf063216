"""The supported version matrix: ``nox`` (all sessions), ``nox -l`` (list).

Each ``tests`` session installs one Django release line on one Python and
runs the project's tests once per driver (``runtests.py``: psycopg 3, then
psycopg2 with psycopg 3 hidden). ``django_suite`` runs Django's own tests on
the aurora engine (scripts/django_suite.py) for the same pairs.

SQLAlchemy: requirements/test.txt pins the newest release (2.1); the
``tests`` session on the newest Python installs the 2.0 line instead
(``SQLALCHEMY_20``: ORCA's Lambdas pin ``SQLAlchemy~=2.0.5``), so the plugin's
own tests (tests/test_sqlalchemy_*.py) run under 2.0 there, and then
SQLAlchemy's compliance suite on the plugin (scripts/sqlalchemy_suite.py).
CI (.ci/run) runs 2.1 in its own environment and 2.0 in that session.

Pythons are looked up on the PATH as ``python3.X``; pyenv's installed
versions are added to it, so a pyenv machine needs no activation.
"""

from __future__ import annotations

import glob
import os
from pathlib import Path

import nox

ROOT = Path(__file__).parent

# (Python, Django release line): what setup.cfg's classifiers claim.
MATRIX = [
    ("3.11", "5.2"),
    ("3.12", "6.1"),
    ("3.13", "6.1"),
]

#: The SQLAlchemy 2.0 release the 2.0 leg installs (the newest 2.0.x).
SQLALCHEMY_20 = "SQLAlchemy==2.0.59"
#: The Python whose ``tests`` session runs SQLAlchemy 2.0 (see above).
SQLALCHEMY_20_PYTHON = "3.13"

nox.options.sessions = ["tests"]
nox.options.reuse_existing_virtualenvs = True


def _add_pyenv_pythons() -> None:
    root = os.environ.get("PYENV_ROOT", os.path.expanduser("~/.pyenv"))
    bins = sorted(glob.glob(os.path.join(root, "versions", "3.*", "bin")), reverse=True)
    os.environ["PATH"] = os.pathsep.join([*bins, os.environ.get("PATH", "")])


_add_pyenv_pythons()


def _requirements(name: str) -> list[str]:
    """Pinned requirements of requirements/NAME.txt, without Django (the
    matrix picks it), includes, the editable install and comments."""
    lines = (ROOT / "requirements" / f"{name}.txt").read_text().splitlines()
    keep = []
    for line in lines:
        line = line.split("#", 1)[0].strip()
        if not line or line.startswith("-") or line.lower().startswith("django>"):
            continue
        if line.lower().startswith(("django=", "django<", "django~")):
            continue
        keep.append(line)
    return keep


def _install(session: nox.Session, django: str, sqlalchemy: str | None = None) -> None:
    """Django's line, the pinned requirements, and ``sqlalchemy`` (a
    requirement) in place of requirements/test.txt's pin when given."""
    test = [r for r in _requirements("test") if not r.startswith("pgserver")]
    if sqlalchemy:
        test = [r for r in test if not r.lower().startswith("sqlalchemy")] + [sqlalchemy]
    session.install(f"Django~={django}.0", *_requirements("base"), *test)
    session.install("--no-deps", ".")


@nox.session
@nox.parametrize(("python", "django"), MATRIX, ids=[f"py{p}-django{d}" for p, d in MATRIX])
def tests(session: nox.Session, django: str) -> None:
    """The project's tests, both drivers (py3.13: SQLAlchemy 2.0, + its suite).

    On ``SQLALCHEMY_20_PYTHON`` SQLAlchemy 2.0 replaces the pinned 2.1 and,
    when no pytest arguments are given, SQLAlchemy's compliance suite on the
    plugin follows (scripts/sqlalchemy_suite.py, stock vs plugin)."""
    sqlalchemy_20 = session.python == SQLALCHEMY_20_PYTHON
    _install(session, django, SQLALCHEMY_20 if sqlalchemy_20 else None)
    session.run(
        "python",
        "-c",
        "import django, sqlalchemy, sys; "
        "print('Django', django.__version__, 'SQLAlchemy', sqlalchemy.__version__, sys.version)",
    )
    args = list(session.posargs)
    driver = args[:2] if args[:1] == ["--driver"] else []
    session.run(
        "python", "runtests.py", *driver, "-q", "-p", "no:cacheprovider", *args[len(driver) :]
    )
    if sqlalchemy_20 and not args:
        # Both drivers, stock and plugin, two runs at a time.
        session.run("python", "scripts/sqlalchemy_suite.py", "--jobs", "2")


@nox.session
@nox.parametrize(("python", "django"), MATRIX, ids=[f"py{p}-django{d}" for p, d in MATRIX])
def django_suite(session: nox.Session, django: str) -> None:
    """Django's own tests (the installed release's sdist) on the aurora engine."""
    _install(session, django)
    session.run("python", "scripts/django_suite.py", *session.posargs)
