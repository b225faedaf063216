"""The lexical analysis behind :func:`orca_db.sql.profile`: run once per
statement text (the profile is cached), loaded on the first one."""

from __future__ import annotations

from typing import Final

from . import lexer
from .facts import Profile
from .lexer import OP, QIDENT, WORD

READ_STARTS: Final = frozenset({"SELECT", "VALUES", "TABLE", "WITH", "SHOW", "EXPLAIN"})
# Statements that set session state by what they are.
_SESSION_STARTS: Final = frozenset(
    {"SET", "RESET", "DISCARD", "LISTEN", "UNLISTEN", "DEALLOCATE", "LOAD", "DECLARE", "DO"}
)
# Session-level advisory locks (the _xact_ ones end with the transaction:
# not session state).
ADVISORY_SESSION_FUNCTIONS: Final = frozenset(
    {
        "pg_advisory_lock",
        "pg_advisory_lock_shared",
        "pg_try_advisory_lock",
        "pg_try_advisory_lock_shared",
        "pg_advisory_unlock",
        "pg_advisory_unlock_shared",
        "pg_advisory_unlock_all",
    }
)
# Calls that set up session state nobody can describe further: the random
# seed; a backup or a replication-origin set-up (they belong to the
# session); a temporary replication slot (it lives as long as the session).
OPAQUE_SESSION_FUNCTIONS: Final = frozenset(
    {
        "setseed",
        "pg_backup_start",
        "pg_backup_stop",
        "pg_start_backup",
        "pg_stop_backup",
        "pg_replication_origin_session_setup",
        "pg_replication_origin_session_reset",
        "pg_create_logical_replication_slot",
        "pg_create_physical_replication_slot",
        "pg_copy_logical_replication_slot",
        "pg_copy_physical_replication_slot",
    }
)
# Calls that change session state (and dblink*, by prefix).
SESSION_FUNCTIONS: Final = (
    frozenset({"set_config"}) | ADVISORY_SESSION_FUNCTIONS | OPAQUE_SESSION_FUNCTIONS
)
_LOCK_STRENGTHS: Final = frozenset({"UPDATE", "SHARE", "NO", "KEY"})
_DML: Final = frozenset({"INSERT", "UPDATE", "DELETE", "MERGE"})
_OPTIONAL_NOISE: Final = frozenset({"WORK", "TRANSACTION"})


class _Statement:
    """The tokens of one statement that carry meaning (no spaces, no
    comments), with upper-cased words alongside."""

    __slots__ = ("sql", "toks", "words")

    def __init__(self, sql: str, toks: list[lexer.Token]):
        self.sql = sql
        self.toks = toks
        self.words = [
            sql[t.start : t.end].upper() if t.kind == WORD else "" for t in toks
        ]  # fmt: skip

    def first(self) -> int:
        """Index of the first keyword, after opening parentheses; -1 if none."""
        for index, tok in enumerate(self.toks):
            if tok.kind == OP and self.sql[tok.start] == "(":
                continue
            return index if tok.kind == WORD else -1
        return -1

    def text(self, index: int) -> str:
        tok = self.toks[index]
        return self.sql[tok.start : tok.end]


def _split(sql: str) -> tuple[list[_Statement], bool]:
    """The statements of a text, and whether a literal, comment or quoted
    name holds a placeholder."""
    statements: list[_Statement] = []
    current: list[lexer.Token] = []
    hidden = False
    for tok in lexer.tokens(sql):
        kind = tok.kind
        if kind == lexer.SPACE:
            continue
        if kind in (lexer.COMMENT, lexer.STRING, QIDENT) and lexer.hides_placeholder(sql, tok):
            hidden = True
        if kind == lexer.COMMENT:
            continue
        if kind == OP and sql[tok.start] == ";":
            if current:
                statements.append(_Statement(sql, current))
            current = []
            continue
        current.append(tok)
    if current:
        statements.append(_Statement(sql, current))
    return statements, hidden


def lex_profile(sql: str) -> Profile:
    """The profile of ``sql``, computed (no cache)."""
    statements, hidden = _split(sql)
    if not statements:
        return Profile("", None, None, False, False, False, False)
    head = statements[0]
    start = head.first()
    first = head.words[start] if start >= 0 else ""
    control, name, chain = _control(head, start)
    multiple = len(statements) > 1
    if multiple and any(_control(s, s.first())[0] for s in statements[1:]):
        control, name, chain = "mixed", None, False
    session = any(_session(s) for s in statements)
    calls = any(_calls(s) for s in statements)
    maybe_read = (
        not multiple
        and not session
        and not hidden
        and first in READ_STARTS
        and _reads_only(head, first)
    )
    return Profile(first, control, name, chain, maybe_read, session, multiple, calls)


def _next_word(statement: _Statement, index: int) -> tuple[str, int]:
    """The word at ``index`` ('' if none), skipping WORK/TRANSACTION."""
    words = statement.words
    while index < len(words) and words[index] in _OPTIONAL_NOISE:
        index += 1
    return (words[index] if index < len(words) else ""), index


def _name_at(statement: _Statement, index: int) -> str | None:
    if index >= len(statement.toks):
        return None
    return lexer.identifier(statement.sql, statement.toks[index])


def _chain(statement: _Statement, index: int) -> bool:
    words = statement.words[index:]
    return words[:2] == ["AND", "CHAIN"]


def _control(statement: _Statement, start: int) -> tuple[str | None, str | None, bool]:
    """(control, savepoint name, chain) of one statement."""
    if start < 0:
        return None, None, False
    words = statement.words
    word = words[start]
    after = start + 1
    if word == "BEGIN":
        return "begin", None, False
    if word == "START":
        return ("begin" if words[after : after + 1] == ["TRANSACTION"] else None), None, False
    if word in ("COMMIT", "END"):
        following, index = _next_word(statement, after)
        if word == "COMMIT" and following == "PREPARED":
            return "commit_prepared", None, False
        return "commit", None, _chain(statement, index)
    if word in ("ROLLBACK", "ABORT"):
        following, index = _next_word(statement, after)
        if following == "PREPARED" and word == "ROLLBACK":
            return "rollback_prepared", None, False
        if following == "TO":
            index += 1
            if words[index : index + 1] == ["SAVEPOINT"] and index + 1 < len(words):
                index += 1
            return "rollback_to", _name_at(statement, index), False
        return "rollback", None, _chain(statement, index)
    if word == "SAVEPOINT":
        return "savepoint", _name_at(statement, after), False
    if word == "RELEASE":
        index = after
        if words[index : index + 1] == ["SAVEPOINT"] and index + 1 < len(words):
            index += 1
        return "release", _name_at(statement, index), False
    if word == "PREPARE" and words[after : after + 1] == ["TRANSACTION"]:
        return "prepare_transaction", None, False
    return None, None, False


def _session(statement: _Statement) -> bool:
    """May this statement change session state? Conservative."""
    start = statement.first()
    words = statement.words
    first = words[start] if start >= 0 else ""
    if first in _SESSION_STARTS:
        return True
    if first == "PREPARE" and words[start + 1 : start + 2] != ["TRANSACTION"]:
        return True
    temp = "TEMP" in words or "TEMPORARY" in words
    if temp and ("CREATE" in words or "INTO" in words):
        return True  # CREATE TEMP ..., SELECT ... INTO TEMP
    sql, toks = statement.sql, statement.toks
    for index, tok in enumerate(toks):
        if tok.kind == WORD and words[index] == "UESCAPE":
            return True  # a name we do not decode: anything is possible
        if tok.kind not in (WORD, QIDENT):
            continue
        name = lexer.identifier(sql, tok)
        if name is None:
            continue
        after = toks[index + 1] if index + 1 < len(toks) else None
        if after is None or after.kind != OP:
            continue
        mark = sql[after.start]
        if mark == "." and (name == "pg_temp" or name.startswith("pg_temp_")):
            return True  # an object in the session's temporary schema
        if mark == "(" and (name in SESSION_FUNCTIONS or name.startswith("dblink")):
            return True
    return False


# Words that a parenthesis follows without a call: keywords, and built-in
# constructs the grammar spells like calls but pg_proc does not list.
_NOT_CALLS: Final = frozenset(
    {
        # reserved, or column-name keywords (never a function's name)
        "IN", "VALUES", "AS", "EXISTS", "ANY", "ALL", "SOME", "ARRAY", "ROW", "GROUP", "ON",
        "USING", "AND", "OR", "NOT", "WHERE", "SELECT", "FROM", "JOIN", "WHEN", "THEN",
        "ELSE", "CASE", "BY", "INTO", "DISTINCT", "LATERAL", "RETURNING", "UNIQUE", "CHECK",
        "PRIMARY", "WITH", "DEFAULT", "IS", "LIKE", "ILIKE", "SIMILAR", "BETWEEN", "UNION",
        "INTERSECT", "EXCEPT", "LIMIT", "OFFSET", "HAVING", "ORDER", "CONSTRAINT",
        "REFERENCES", "FOREIGN", "TO", "FOR", "DO", "CAST", "TREAT", "COALESCE", "NULLIF",
        "GREATEST", "LEAST", "EXTRACT", "POSITION", "SUBSTRING", "TRIM", "OVERLAY",
        "NORMALIZE", "GROUPING", "XMLELEMENT", "XMLFOREST", "XMLCONCAT", "XMLPARSE",
        "XMLPI", "XMLROOT", "XMLSERIALIZE", "XMLEXISTS", "XMLATTRIBUTES", "XMLNAMESPACES",
        "XMLTABLE", "CURRENT_DATE", "CURRENT_TIME", "CURRENT_TIMESTAMP", "LOCALTIME",
        "LOCALTIMESTAMP", "TIMESTAMP", "TIME", "INTERVAL", "VARCHAR", "CHAR", "CHARACTER",
        "VARYING", "NUMERIC", "DECIMAL", "BIT", "FLOAT", "PRECISION", "CONFLICT",
        # unreserved, but only ever after a call's closing parenthesis in Django's SQL
        "OVER", "FILTER",
    }
)  # fmt: skip
# Words after which a name and a parenthesis name a relation or a type,
# not a call: INSERT INTO t (a), CREATE TABLE t (a), CREATE INDEX i
# (a), REFERENCES t (a), CAST(x AS numeric(10, 2)). Not ON or USING: a
# function may follow them (JOIN t ON f(x)).
_RELATION_BEFORE: Final = frozenset(
    {"INTO", "TABLE", "REFERENCES", "INDEX", "ONLY", "AS", "TYPE", "VIEW", "EXISTS",
     "UPDATE", "COPY", "DOMAIN", "SEQUENCE"}
)  # fmt: skip


def _calls(statement: _Statement) -> bool:
    """May this statement call a function that is not a built-in known to
    be free of side effects? Errs towards True. (The catalog loads on the
    first candidate: about 1.3 ms once per process.)"""
    sql, toks, words = statement.sql, statement.toks, statement.words
    if statement.first() >= 0 and words[statement.first()] == "CALL":
        return True
    for index in range(1, len(toks)):
        opening = toks[index]
        if opening.kind != OP or sql[opening.start] != "(":
            continue
        name_index = index - 1
        if toks[name_index].kind not in (WORD, QIDENT) or words[name_index] in _NOT_CALLS:
            continue
        # The start of a qualified name (schema.function), and what is before it.
        start = name_index
        while start >= 2 and sql[toks[start - 1].start] == "." and toks[start - 1].kind == OP:
            start -= 2
        before = toks[start - 1] if start >= 1 else None
        if before is not None:
            if before.kind == WORD and words[start - 1] in _RELATION_BEFORE:
                continue
            if before.kind == OP and sql[before.start : before.end] == "::":
                continue
        from ._pg_catalog import FUNCTIONS

        name = lexer.identifier(sql, toks[name_index])
        schema = lexer.identifier(sql, toks[start]) if start != name_index else None
        if name in FUNCTIONS and schema in (None, "pg_catalog") and start >= name_index - 2:
            continue
        return True
    return False


def _reads_only(statement: _Statement, first: str) -> bool:
    """No word in a read-like statement that makes it a write."""
    words = statement.words
    if "INTO" in words:
        return False  # SELECT INTO creates a table
    for index, word in enumerate(words):
        if word == "FOR" and words[index + 1 : index + 2] and words[index + 1] in _LOCK_STRENGTHS:
            return False  # FOR UPDATE / NO KEY UPDATE / SHARE / KEY SHARE
    if first == "EXPLAIN" and ("ANALYZE" in words or "ANALYSE" in words):
        return False  # runs the statement
    # A data-modifying WITH. The words may also be column names (unreserved
    # keywords), which only costs a parse-free "no".
    return not (first == "WITH" and not _DML.isdisjoint(words))
