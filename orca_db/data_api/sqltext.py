"""Reading SQL text as PostgreSQL's lexer does, far enough to tell code from
quoted literals, quoted identifiers and comments: to find the ``;`` that
separate statements (the Data API runs one per call) and the ``:name``
parameters (the local endpoint binds them)."""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator
from typing import Final

_DOLLAR_TAG: Final = re.compile(r"\$([A-Za-z_][A-Za-z_0-9]*)?\$")
_PARAMETER: Final = re.compile(r"(?<!:):([A-Za-z_][A-Za-z_0-9]*)")


def segments(sql: str) -> Iterator[tuple[str, int, int]]:
    """``(kind, start, end)`` for each stretch of ``sql``: ``"code"``,
    ``"literal"`` ('...', E'...', "...", $tag$...$tag$) or ``"comment"``
    (``--`` and nested ``/* */``)."""
    index = 0
    start = 0
    length = len(sql)
    while index < length:
        char = sql[index]
        end = None
        kind = "literal"
        if char == "'":
            escapes = index > 0 and sql[index - 1] in "eE" and not _word_char(sql, index - 2)
            end = _quoted_end(sql, index, "'", escapes)
        elif char == '"':
            end = _quoted_end(sql, index, '"', False)
        elif char == "-" and sql.startswith("--", index):
            newline = sql.find("\n", index)
            end = length if newline < 0 else newline + 1
            kind = "comment"
        elif char == "/" and sql.startswith("/*", index):
            end = _comment_end(sql, index)
            kind = "comment"
        elif char == "$" and not _word_char(sql, index - 1):
            match = _DOLLAR_TAG.match(sql, index)
            if match:
                closing = sql.find(match.group(0), match.end())
                end = length if closing < 0 else closing + len(match.group(0))
        if end is None:
            index += 1
            continue
        if index > start:
            yield "code", start, index
        yield kind, index, end
        index = start = end
    if start < length:
        yield "code", start, length


def _word_char(sql: str, index: int) -> bool:
    return index >= 0 and (sql[index].isalnum() or sql[index] == "_")


def _quoted_end(sql: str, index: int, quote: str, escapes: bool) -> int:
    position = index + 1
    length = len(sql)
    while position < length:
        char = sql[position]
        if escapes and char == "\\":
            position += 2
            continue
        if char == quote:
            if position + 1 < length and sql[position + 1] == quote:
                position += 2  # '' inside '...'
                continue
            return position + 1
        position += 1
    return length


def _comment_end(sql: str, index: int) -> int:
    depth = 0
    position = index
    length = len(sql)
    while position < length:
        if sql.startswith("/*", position):
            depth += 1
            position += 2
        elif sql.startswith("*/", position):
            depth -= 1
            position += 2
            if depth == 0:
                return position
        else:
            position += 1
    return length


@functools.lru_cache(maxsize=1024)
def statement_count(sql: str) -> int:
    """How many statements ``sql`` holds (empty ones between ``;`` and
    comments do not count)."""
    count = 0
    pending = False
    for kind, start, end in segments(sql):
        if kind == "literal":
            pending = True
        elif kind == "code":
            for char in sql[start:end]:
                if char == ";":
                    count += pending
                    pending = False
                elif not char.isspace():
                    pending = True
    return count + pending


def named_parameters(sql: str) -> list[tuple[int, int, str]]:
    """``(start, end, name)`` of each ``:name`` parameter in code (``::`` is
    a cast, never a parameter)."""
    found = []
    for kind, start, end in segments(sql):
        if kind == "code":
            for match in _PARAMETER.finditer(sql, start, end):
                found.append((match.start(), match.end(), match.group(1)))
    return found


def split(sql: str) -> list[str]:
    """``sql``'s statements, each without its ``;`` (empty ones dropped)."""
    parts: list[str] = []
    start = 0
    for kind, begin, end in segments(sql):
        if kind != "code":
            continue
        position = sql.find(";", begin, end)
        while position >= 0:
            parts.append(sql[start:position])
            start = position + 1
            position = sql.find(";", start, end)
    parts.append(sql[start:])
    return [part.strip() for part in parts if part.strip() and statement_count(part)]
