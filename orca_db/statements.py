"""Kept for imports written before orca_db.sql: the same names.

``is_read_only`` is :func:`orca_db.sql.is_replayable_read`."""

from typing import TYPE_CHECKING, Any

from .sql import Profile, profile

if TYPE_CHECKING:
    from .sql.effects import SessionEffect, session_effects
    from .sql.replay import is_replayable_read
    from .sql.scrub import STATEMENT_LIMIT, scrub_message, scrub_sql

    is_read_only = is_replayable_read

__all__ = [
    "STATEMENT_LIMIT",
    "Profile",
    "SessionEffect",
    "is_read_only",
    "is_replayable_read",
    "profile",
    "scrub_message",
    "scrub_sql",
    "session_effects",
]


def __getattr__(name: str) -> Any:
    from . import sql

    return getattr(sql, name)
