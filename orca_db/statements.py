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


# ----- provisional: replaced by the lexer-based profile (sqlclass branch) ----

import dataclasses as _dataclasses  # noqa: E402

_CONTROL_WORDS: Final = {
    "BEGIN": "begin",
    "START": "begin",
    "COMMIT": "commit",
    "END": "commit",
    "ROLLBACK": "rollback",
    "ABORT": "rollback",
    "SAVEPOINT": "savepoint",
    "RELEASE": "release",
}
_SESSION_WORDS: Final = frozenset(
    {"SET", "RESET", "DISCARD", "LISTEN", "UNLISTEN", "PREPARE", "DEALLOCATE", "LOAD", "DECLARE"}
)
_SESSION_TEXT: Final = re.compile(
    r"\b(?:set_config|pg_advisory_lock\w*|pg_try_advisory_lock\w*|pg_advisory_unlock\w*"
    r"|dblink_connect\w*|TEMP|TEMPORARY)\b",
    re.IGNORECASE,
)


class Profile:
    __slots__ = ("control", "first", "maybe_read", "savepoint_name", "session")

    def __init__(self, first, control, savepoint_name, maybe_read, session):
        self.first = first
        self.control = control
        self.savepoint_name = savepoint_name
        self.maybe_read = maybe_read
        self.session = session

    def __repr__(self):
        return f"Profile({self.first!r}, {self.control!r}, {self.savepoint_name!r}, {self.maybe_read}, {self.session})"


_UNKNOWN = Profile("", None, None, False, True)
_PROFILES: dict[str, Profile] = {}


def profile(sql: object) -> Profile:
    if isinstance(sql, str):
        found = _PROFILES.get(sql)
        if found is None:
            found = _profile(sql)
            if len(_PROFILES) > 4096:
                _PROFILES.clear()
            _PROFILES[sql] = found
        return found
    if isinstance(sql, bytes):
        return profile(sql.decode("utf-8", "replace"))
    return _UNKNOWN


def _profile(sql: str) -> Profile:
    bare = _strip(sql)
    words = bare.split()
    first = re.sub(r"[^A-Za-z]", "", words[0]).upper() if words else ""
    second = words[1].upper() if len(words) > 1 else ""
    control = _CONTROL_WORDS.get(first)
    name = None
    if first == "ROLLBACK" and second in ("TO", "PREPARED"):
        control = "rollback_to" if second == "TO" else None
        name = _savepoint_name(sql)
    elif first == "PREPARE" and second == "TRANSACTION":
        control = "prepare_transaction"
    elif first == "COMMIT" and second == "PREPARED":
        control = None
    elif control in ("savepoint", "release"):
        name = _savepoint_name(sql)
    session = (first in _SESSION_WORDS and control is None) or bool(_SESSION_TEXT.search(bare))
    if first == "PREPARE" and control == "prepare_transaction":
        session = False
    maybe_read = first in _READ_STARTS
    return Profile(first, control, name, maybe_read, session)


def _savepoint_name(sql: str) -> str | None:
    match = re.search(
        r'(?:SAVEPOINT|RELEASE|TO)\s+(?:SAVEPOINT\s+)?("(?:[^"]|"")*"|\w+)\s*;?\s*$', sql, re.I
    )
    if not match:
        return None
    name = match.group(1)
    return name[1:-1].replace('""', '"') if name.startswith('"') else name.lower()


@_dataclasses.dataclass(frozen=True)
class SessionEffect:
    kind: str
    name: str | None = None
    transaction_scoped: bool = False
    restorable: bool = False


def session_effects(sql: object) -> tuple[SessionEffect, ...]:
    if not isinstance(sql, str):
        return (SessionEffect("unknown"),)
    bare = _strip(sql)
    words = bare.upper().split()
    if not words:
        return ()
    first = words[0]
    if first == "SET":
        local = len(words) > 1 and words[1] == "LOCAL"
        rest = words[2:] if len(words) > 1 and words[1] in ("LOCAL", "SESSION") else words[1:]
        name = rest[0].lower().rstrip("=") if rest else None
        if rest[:2] == ["SESSION", "AUTHORIZATION"]:
            name = "session_authorization"
        return (SessionEffect("set", name, transaction_scoped=local, restorable=True),)
    if first == "RESET":
        if words[1:2] == ["ALL"]:
            return (SessionEffect("reset_all", restorable=True),)
        return (
            SessionEffect("reset", words[1].lower() if len(words) > 1 else None, restorable=True),
        )
    if first == "DISCARD":
        what = words[1] if len(words) > 1 else ""
        kind = {"ALL": "discard_all", "TEMP": "discard_temp", "TEMPORARY": "discard_temp"}
        return (SessionEffect(kind.get(what, "discard_plans"), restorable=False),)
    if first == "LISTEN":
        return (SessionEffect("listen", words[1].lower() if len(words) > 1 else None),)
    if first == "UNLISTEN":
        if words[1:2] == ["*"]:
            return (SessionEffect("unlisten_all"),)
        return (SessionEffect("unlisten", words[1].lower() if len(words) > 1 else None),)
    if first == "PREPARE":
        return (SessionEffect("prepare", words[1].lower() if len(words) > 1 else None),)
    if first == "DEALLOCATE":
        if "ALL" in words[1:3]:
            return (SessionEffect("deallocate_all"),)
        return (SessionEffect("deallocate", words[-1].lower()),)
    if first == "DECLARE":
        return (SessionEffect("held_cursor"),) if "HOLD" in words else ()
    if first == "CREATE" and ("TEMP" in words[:4] or "TEMPORARY" in words[:4]):
        scoped = "ON" in words and "DROP" in words
        return (SessionEffect("temp_table", transaction_scoped=scoped),)
    effects: list[SessionEffect] = []
    lowered = bare.lower()
    if "set_config" in lowered:
        match = re.fullmatch(
            r"\s*select\s+(?:pg_catalog\.)?set_config\s*\(\s*('[^']*'|%s)\s*,\s*('[^']*'|%s)\s*,"
            r"\s*(false|true|%s)\s*\)\s*;?\s*",
            sql.lower(),
        )
        if match:
            local = match.group(3) == "true"
            name = match.group(1).strip("'") if match.group(1) != "%s" else None
            effects.append(SessionEffect("set", name, transaction_scoped=local, restorable=True))
        else:
            effects.append(SessionEffect("unknown"))
    if re.search(r"pg_(?:try_)?advisory_lock(?:_shared)?\s*\(", lowered):
        effects.append(SessionEffect("advisory_lock"))
    if re.search(r"pg_advisory_unlock_all\s*\(", lowered):
        effects.append(SessionEffect("advisory_unlock_all"))
    elif re.search(r"pg_advisory_unlock(?:_shared)?\s*\(", lowered):
        effects.append(SessionEffect("advisory_unlock"))
    if re.search(r"\binto\s+temp", lowered) or "dblink_connect" in lowered:
        effects.append(SessionEffect("unknown"))
    return tuple(effects)


def is_replayable_read(sql: object) -> bool:
    return is_read_only(sql)
