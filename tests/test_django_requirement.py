"""Django is an extra, not a base requirement: a SQLAlchemy-only install
(``orca-db[sqlalchemy]``) brings no Django, and pip no longer holds a
Django project to the supported releases. The Django host does, when it is
imported: the engines (``orca_db.backends.*``) and ``orca_db_app`` refuse
an unsupported Django with ``ImproperlyConfigured`` naming both versions,
and say which extra to install when Django is missing. One constant holds
the supported release lines (``orca_db.backends.django_version``); setup.cfg
(the ``django`` and ``demo`` extras, the classifiers) and the nox matrix
must say the same. No database needed."""

from __future__ import annotations

import ast
import configparser
import re
import subprocess
import sys

import pytest
from django.core.exceptions import ImproperlyConfigured
from packaging.requirements import Requirement

from orca_db.backends.django_version import SUPPORTED_DJANGO, check_django_version
from tests.layout import ROOT

#: What Django users import, each a door into the Django host.
DJANGO_ENTRY_POINTS = (
    "orca_db.backends.aurora",
    "orca_db.backends.aurora_data_api",
    "orca_db.backends.aurora_pool",
    "orca_db_app",
)


def setup_cfg() -> configparser.ConfigParser:
    parser = configparser.ConfigParser()
    parser.read(ROOT / "setup.cfg")
    return parser


def requirements(value: str) -> list[Requirement]:
    return [Requirement(line) for line in value.splitlines() if line.strip()]


def extras() -> dict[str, list[Requirement]]:
    return {
        name: requirements(value) for name, value in setup_cfg()["options.extras_require"].items()
    }


@pytest.mark.parametrize(
    "version",
    [(5, 2, 0, "final", 0), (5, 2, 20, "final", 0), (6, 1, 0, "rc", 1), (6, 1, 3, "final", 0)],
)
def test_a_supported_django_passes(version):
    check_django_version(version)


@pytest.mark.parametrize(
    ("version", "shown"),
    [
        ((4, 2, 27, "final", 0), "4.2.27"),
        ((5, 1, 9, "final", 0), "5.1.9"),
        ((6, 0, 2, "final", 0), "6.0.2"),
        ((6, 2, 0, "alpha", 0), "6.2a0"),
        ((7, 0, 0, "final", 0), "7.0"),
    ],
)
def test_an_unsupported_django_is_refused_naming_both_versions(version, shown):
    with pytest.raises(ImproperlyConfigured) as refused:
        check_django_version(version)
    message = str(refused.value)
    assert f"Django {shown} is installed" in message
    assert "supports Django 5.2 and 6.1" in message
    assert 'pip install "orca-db[django]"' in message


def test_setup_cfg_says_what_the_check_says():
    """The one range, in every place that states it."""
    config = setup_cfg()
    install_requires = requirements(config["options"]["install_requires"])
    # The core only: every host's framework is an extra.
    assert {r.name.lower() for r in install_requires} == {
        "tenacity",
        "python-json-logger",
        "pglast",
    }
    found = extras()
    (django,) = found["django"]
    assert django.name == "Django" and not django.extras and django.marker is None
    # The demo runs the repository's Django project: the same range.
    assert [str(r) for r in found["demo"] if r.name == "Django"] == [str(django)]
    # No other extra asks for Django (a SQLAlchemy install stays free of it).
    for name, listed in found.items():
        if name not in ("django", "demo"):
            assert all(r.name.lower() != "django" for r in listed), name
    # Every release, and the lines around them: the extra admits exactly the
    # lines the check admits.
    for major, minor in [(4, 2), (5, 0), (5, 1), (5, 2), (6, 0), (6, 1), (6, 2), (7, 0)]:
        for patch in (0, 9):
            admitted = django.specifier.contains(f"{major}.{minor}.{patch}")
            assert admitted is ((major, minor) in SUPPORTED_DJANGO), (major, minor, patch)
    classifiers = re.findall(
        r"Framework :: Django :: (\d+)\.(\d+)", config["metadata"]["classifiers"]
    )
    assert sorted((int(a), int(b)) for a, b in classifiers) == sorted(SUPPORTED_DJANGO)


def test_the_nox_matrix_tests_every_supported_line():
    tree = ast.parse((ROOT / "noxfile.py").read_text())
    (matrix,) = (
        node.value
        for node in tree.body
        if isinstance(node, ast.Assign) and ast.unparse(node.targets[0]) == "MATRIX"
    )
    lines = {
        tuple(int(part) for part in django.split(".")) for _, django in ast.literal_eval(matrix)
    }
    assert lines == set(SUPPORTED_DJANGO)


def python(code: str) -> subprocess.CompletedProcess:
    """``code`` in a fresh process of this environment (nothing imported
    before it), from the checkout."""
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)},
    )


def test_the_django_host_imports_on_the_installed_django():
    result = python(
        "import django, importlib\n"
        f"for name in {DJANGO_ENTRY_POINTS!r}:\n"
        "    importlib.import_module(name)\n"
        "print(django.VERSION[:2])\n"
    )
    assert result.returncode == 0, result.stderr
    assert ast.literal_eval(result.stdout.strip()) in SUPPORTED_DJANGO


@pytest.mark.parametrize("entry_point", DJANGO_ENTRY_POINTS)
def test_without_django_the_import_says_which_extra_to_install(entry_point):
    # Django hidden as runtests.py hides psycopg 3: a None in sys.modules.
    result = python(
        "import sys\n"
        "sys.modules['django'] = None\n"
        "import importlib\n"
        "try:\n"
        f"    importlib.import_module({entry_point!r})\n"
        "except ImportError as error:\n"
        "    print(type(error).__name__, error.name, error, sep='|')\n"
    )
    assert result.returncode == 0, result.stderr
    kind, name, message = result.stdout.strip().split("|")
    assert kind == "ModuleNotFoundError" and name == "django"
    assert 'pip install "orca-db[django]"' in message
    assert "supports Django 5.2 and 6.1" in message
