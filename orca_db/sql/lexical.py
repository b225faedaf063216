"""What a statement looks like, from its text alone: cheap enough to ask on
every statement the backend sends.

``profile(sql)`` lexes a statement text once and remembers the answer in a
plain dict: Django sends the same few hundred texts over and over, so a
repeat costs one dict lookup. Nothing here parses SQL grammar or imports
pglast; the precise answers (:func:`orca_db.sql.is_replayable_read`,
:func:`orca_db.sql.session_effects`) parse, and are asked only when needed.
The lexer itself (``orca_db.sql.analysis``) loads on the first new text;
the :class:`Profile` it returns is defined in ``orca_db.sql.facts``.
"""

from __future__ import annotations

from typing import Final

from .facts import UNKNOWN, Profile

__all__ = ["PROFILES", "UNKNOWN", "Profile", "clear_cache", "profile"]

CACHE_LIMIT: Final = 4096
#: Statement text -> its Profile. Read directly by the backend's hot path
#: (one dict subscript); written only by :func:`profile`.
PROFILES: dict[object, Profile] = {}


def profile(sql: object) -> Profile:
    """The :class:`Profile` of a statement text (str or bytes)."""
    try:
        return PROFILES[sql]
    except (KeyError, TypeError):  # TypeError: unhashable (Composed)
        return _profile_new(sql)


def _profile_new(sql: object) -> Profile:
    if isinstance(sql, bytes):
        result = profile(sql.decode("utf-8", "replace"))
    elif isinstance(sql, str):
        from .analysis import lex_profile

        result = lex_profile(sql)
    else:
        return UNKNOWN
    if len(PROFILES) >= CACHE_LIMIT:
        PROFILES.clear()  # a crude bound: texts are rarely this varied
    PROFILES[sql] = result
    return result


def clear_cache() -> None:
    PROFILES.clear()
