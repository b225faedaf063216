"""Kept for imports written before :mod:`orca_db.sql`: the same names,
loaded as lazily (``is_read_only`` is :func:`orca_db.sql.is_replayable_read`)."""

from typing import Any

from . import sql
from .sql import Profile, __all__, profile  # noqa: F401


def __getattr__(name: str) -> Any:
    return getattr(sql, name)
