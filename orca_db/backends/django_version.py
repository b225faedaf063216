"""The Django releases the Django host supports, checked when it is imported.

Django is an extra (``orca-db[django]``), not a base requirement: a
SQLAlchemy-only install brings none. So pip no longer holds a Django project
to the supported releases; the host does, when ``orca_db.backends`` (every
engine) or ``orca_db_app`` is imported: with Django missing, an
``ImportError`` naming the extra; on another release, ``ImproperlyConfigured``
naming both versions. setup.cfg's ``django`` extra, its classifiers and the
nox matrix say the same as ``SUPPORTED_DJANGO`` (tests/test_django_requirement.py).
"""

from __future__ import annotations

from typing import Any

#: The Django release lines (major, minor) orca-db supports: setup.cfg's
#: ``django`` extra (``Django>=5.2,<6.2,!=6.0.*``) admits exactly these.
SUPPORTED_DJANGO = ((5, 2), (6, 1))

_LINES = " and ".join(f"{major}.{minor}" for major, minor in SUPPORTED_DJANGO)
_INSTALL = 'pip install "orca-db[django]"'


def require_django() -> None:
    """Raise unless a supported Django is installed (see the module)."""
    try:
        import django
    except ImportError as error:
        raise ModuleNotFoundError(
            f"orca-db's Django engines and orca_db_app need Django, which is not installed: "
            f"{_INSTALL} (orca-db supports Django {_LINES}).",
            name="django",
        ) from error
    check_django_version(django.VERSION)


def check_django_version(version: tuple[Any, ...]) -> None:
    """Raise ``ImproperlyConfigured`` unless ``version`` (``django.VERSION``)
    is of a supported release line."""
    if tuple(version[:2]) in SUPPORTED_DJANGO:
        return
    from django.core.exceptions import ImproperlyConfigured

    raise ImproperlyConfigured(
        f"orca-db supports Django {_LINES}; Django {_shown(version)} is installed. "
        f"Install a supported release ({_INSTALL} picks one)."
    )


def _shown(version: tuple[Any, ...]) -> str:
    """``(6, 2, 0, "alpha", 1)`` as pip shows it: ``6.2a1``."""
    major, minor, micro, level, serial = (*version, 0, 0, 0, "final", 0)[:5]
    text = f"{major}.{minor}" + (f".{micro}" if micro else "")
    pre = {"alpha": "a", "beta": "b", "rc": "rc"}.get(level)
    return text + (f"{pre}{serial}" if pre else "")
