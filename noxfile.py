"""The supported version matrix: ``nox`` (all sessions), ``nox -l`` (list).

Each ``tests`` session installs one Django release line on one Python and
runs the project's tests once per driver (``runtests.py``: psycopg 3, then
psycopg2 with psycopg 3 hidden). ``django_suite`` runs Django's own tests on
the aurora engine (scripts/django_suite.py) for the same pairs.

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


def _install(session: nox.Session, django: str) -> None:
    session.install(
        f"Django~={django}.0",
        *_requirements("base"),
        *(r for r in _requirements("test") if not r.startswith("pgserver")),
    )
    session.install("--no-deps", ".")


@nox.session
@nox.parametrize(("python", "django"), MATRIX, ids=[f"py{p}-django{d}" for p, d in MATRIX])
def tests(session: nox.Session, django: str) -> None:
    """The project's tests with both drivers."""
    _install(session, django)
    session.run(
        "python", "-c", "import django, sys; print('Django', django.__version__, sys.version)"
    )
    args = list(session.posargs)
    driver = args[:2] if args[:1] == ["--driver"] else []
    session.run(
        "python", "runtests.py", *driver, "-q", "-p", "no:cacheprovider", *args[len(driver) :]
    )


@nox.session
@nox.parametrize(("python", "django"), MATRIX, ids=[f"py{p}-django{d}" for p, d in MATRIX])
def django_suite(session: nox.Session, django: str) -> None:
    """Django's own tests (the installed release's sdist) on the aurora engine."""
    _install(session, django)
    session.run("python", "scripts/django_suite.py", *session.posargs)
