"""What a SQL statement is (a read that is safe to replay, or not) and how to
show it without leaking values."""

from __future__ import annotations

import functools
import re
from typing import Final

STATEMENT_LIMIT: Final = 1000

_COMMENTS: Final = re.compile(r"--[^\n]*|/\*.*?\*/", re.DOTALL)
_LITERALS: Final = re.compile(
    r"'(?:[^']|'')*'"  # 'string', with '' escapes
    r"|\$([A-Za-z_]*)\$.*?\$\1\$",  # $tag$ dollar-quoted $tag$
    re.DOTALL,
)
_QUOTED_IDENTIFIERS: Final = re.compile(r'"(?:[^"]|"")*"')
_FIRST_WORD: Final = re.compile(r"\s*\(*\s*([A-Za-z]+)")
_READ_STARTS: Final = frozenset({"SELECT", "SHOW", "VALUES", "TABLE", "WITH", "EXPLAIN"})
# Words that make a statement starting like a read change something: a
# data-modifying CTE, SELECT INTO, a sequence advance, EXPLAIN ANALYZE of a
# write, or a row lock whose holder would silently change on replay.
_WRITE_WORDS: Final = re.compile(
    r"\b(?:INSERT|UPDATE|DELETE|MERGE|INTO|NEXTVAL|SETVAL|ANALYZE|ANALYSE"
    r"|COPY|CALL|LOCK|PG_ADVISORY_\w*|SET_CONFIG|DBLINK\w*|LO_\w+)\b",
    re.IGNORECASE,
)


def _strip(sql: str) -> str:
    sql = _COMMENTS.sub(" ", sql)
    sql = _LITERALS.sub("''", sql)
    return _QUOTED_IDENTIFIERS.sub('""', sql)


def is_read_only(sql: object) -> bool:
    """True when replaying ``sql`` on a new connection cannot change data.

    Conservative: anything unrecognised counts as a write. Functions called by
    a SELECT cannot be seen from here; a SELECT of a function with side effects
    must run in a transaction (which is never replayed statement by statement).
    """
    if isinstance(sql, str):
        return _text_is_read_only(sql)
    if isinstance(sql, bytes):
        return _text_is_read_only(sql.decode("utf-8", "replace"))
    return False  # psycopg.sql.Composed and friends: unhashable, unknown


# Django sends the same few hundred statement texts over and over.
@functools.lru_cache(maxsize=1024)
def _text_is_read_only(sql: str) -> bool:
    bare = _strip(sql)
    match = _FIRST_WORD.match(bare)
    if not match or match.group(1).upper() not in _READ_STARTS:
        return False
    if ";" in bare.rstrip().rstrip(";"):
        return False  # several statements: the later ones may write
    return not _WRITE_WORDS.search(bare)


def scrub_sql(sql: object, limit: int = STATEMENT_LIMIT) -> str:
    """The statement's shape with literal values replaced by ``?``.

    Parameters are never part of it (they travel separately); literals written
    into the SQL text are removed too, since they may be secrets."""
    if isinstance(sql, bytes):
        sql = sql.decode("utf-8", "replace")
    elif not isinstance(sql, str):
        sql = type(sql).__name__
    text = _LITERALS.sub("?", _COMMENTS.sub(" ", sql))
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


_SECRET_PATTERNS: Final = (
    # key=value connection parameters
    (re.compile(r"(password|passwd|pwd|sslpassword)\s*=\s*('[^']*'|\S+)", re.I), r"\1=***"),
    # postgresql://user:password@host
    (re.compile(r"(\w+://[^:/@\s]*):[^@\s]*@"), r"\1:***@"),
    # DETAIL lines quote row values: Key (email)=(x@y) already exists.
    (re.compile(r"\n?DETAIL:.*", re.DOTALL), ""),
)


def scrub_message(message: str, limit: int = STATEMENT_LIMIT) -> str:
    """A driver error message fit for logs: no passwords, no row values."""
    for pattern, replacement in _SECRET_PATTERNS:
        message = pattern.sub(replacement, message)
    message = " ".join(message.split())
    return message if len(message) <= limit else message[: limit - 1] + "…"
