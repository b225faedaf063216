"""Statements and error messages fit for logs and events: no values."""

from __future__ import annotations

import functools
import re
from typing import Final

STATEMENT_LIMIT: Final = 1000


def scrub_sql(sql: object, limit: int = STATEMENT_LIMIT) -> str:
    """The statement's shape: comments removed, every literal (plain,
    ``E''``, ``U&''``, bit and hex strings, dollar-quoted) replaced by
    ``?``, spaces collapsed, at most ``limit`` characters.

    Parameters are never part of it (they travel separately); literals
    written into the SQL text are removed too, since they may be secrets.
    Names (quoted or not), numbers and placeholders stay."""
    from . import lexer, tree  # loaded when first needed, not at import

    text = tree.statement_text(sql)
    if text is None:
        return type(sql).__name__
    pieces = []
    for tok in lexer.tokens(text):
        if tok.kind == lexer.STRING:
            pieces.append("?")
        elif tok.kind == lexer.COMMENT:
            pieces.append(" ")
        else:
            pieces.append(text[tok.start : tok.end])
    return _limit(" ".join("".join(pieces).split()), limit)


@functools.cache
def _secret_patterns() -> tuple[tuple[re.Pattern[str], str], ...]:
    # Compiled on first use, not at import (cold starts).
    return tuple(
        (re.compile(pattern, flags), replacement)
        for pattern, flags, replacement in (
            # key=value connection parameters
            (r"(password|passwd|pwd|sslpassword)\s*=\s*('[^']*'|\S+)", re.I, r"\1=***"),
            # postgresql://user:password@host
            (r"(\w+://[^:/@\s]*):[^@\s]*@", 0, r"\1:***@"),
            # libpq quotes a fragment of a connection string it cannot parse
            (r'(missing "=" after )"[^"]*"', 0, r'\1"?"'),
            # DETAIL lines quote row values: Key (email)=(x@y) already exists.
            # What follows (HINT, CONTEXT) goes with it.
            (r"\n?DETAIL:.*", re.DOTALL, ""),
            # The statement around an error position, and the caret under it:
            # psycopg2 fills parameters in on the client, so they are in it.
            (r"\n?LINE \d+:[^\n]*(\n[ \t]*\^[ \t]*)?", 0, ""),
            # The statement inside a function that failed.
            (r"\n?QUERY:[^\n]*", 0, ""),
            # Values quoted after a colon, or called a value:
            # invalid input syntax for type integer: "secret"
            # invalid value "secr" for "YYYY"
            (r'(:[ \t]+)"(?:[^"\n]|"")*"', 0, r'\1"?"'),
            (r'\b(value|input) "(?:[^"\n]|"")*"', re.I, r'\1 "?"'),
            # A literal the parser stopped at: at or near "'secret"
            (r'(at or near )"(?:[EeBbXxNn]|[Uu]&)?[\'$][^\n]*?"(?=[ \t]*(\n|$))', 0, r'\1"?"'),
            # Any other literal, e.g. CONTEXT: portal parameter $1 = '...'
            (r"'(?:[^'\n]|'')*'", 0, "?"),
        )
    )


def scrub_message(message: str, limit: int = STATEMENT_LIMIT) -> str:
    """A driver error message fit for logs: no passwords, no row values,
    no literals or parameters quoted from the statement."""
    for pattern, replacement in _secret_patterns():
        message = pattern.sub(replacement, message)
    return _limit(" ".join(message.split()), limit)


def _limit(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
