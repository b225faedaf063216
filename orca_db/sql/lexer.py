"""PostgreSQL's lexical rules, enough to find where literals, comments and
names start and end.

One left-to-right scan, as the server's own lexer does: whichever construct
starts first wins, so ``'a--b'`` is a string and ``-- 'x`` a comment. Also
knows the placeholders that Django's drivers fill in on the client
(``%s``, ``%(name)s``, ``%%``; psycopg 3 adds ``%b`` and ``%t``).

Assumes ``standard_conforming_strings = on`` (the default since PostgreSQL
9.1, and what Django requires): in a plain ``'...'`` string a backslash is an
ordinary character; only ``E'...'`` strings have backslash escapes.
"""

from __future__ import annotations

import functools
import re
from typing import Final, NamedTuple

# Token kinds.
SPACE: Final = "space"
COMMENT: Final = "comment"
STRING: Final = "string"  # '...', E'...', U&'...', B'...', X'...', N'...', $tag$...$tag$
QIDENT: Final = "qident"  # "quoted identifier", U&"..."
WORD: Final = "word"  # a keyword or an unquoted identifier
NUMBER: Final = "number"
PARAM: Final = "param"  # $1
PLACEHOLDER: Final = "placeholder"  # %s, %(name)s, %b, %t, and %% (an escaped %)
OP: Final = "op"  # any other single character: ( ) ; , . + ...

# PostgreSQL's identifier characters: A-Za-z_ and every character from
# U+0080 (and digits and $ after the first), written as the ASCII characters
# they exclude: a class reaching U+10FFFF costs sre about 40 ms to compile,
# paid by the first statement of a cold start.
_IDENT_START = r"[^\x00-\x40\x5b-\x5e\x60\x7b-\x7f]"
_IDENT_CONT = r"[^\x00-\x23\x25-\x2f\x3a-\x40\x5b-\x5e\x60\x7b-\x7f]"
#: A dollar quote's tag: no $ inside.
_TAG_CONT = r"[^\x00-\x2f\x3a-\x40\x5b-\x5e\x60\x7b-\x7f]"


class Token(NamedTuple):
    kind: str
    start: int
    end: int


@functools.cache
def _token_pattern() -> re.Pattern[str]:
    # Compiled on first use, not at import (cold starts).
    return re.compile(
        rf"""
        (?P<space>\s+)
        |(?P<line>--[^\n\r]*)
        |(?P<block>/\*)
        |(?P<estring>[Ee]'[^'\\]*(?:(?:\\.|'')[^'\\]*)*(?:'|\Z))
        |(?P<string>(?:[BbXxNn]|[Uu]&)?'[^']*(?:''[^']*)*(?:'|\Z))
        |(?P<qident>(?:[Uu]&)?"[^"]*(?:""[^"]*)*(?:"|\Z))
        |(?P<dollar>\$(?:{_IDENT_START}{_TAG_CONT}*)?\$)
        |(?P<param>\$[0-9]+)
        |(?P<placeholder>%%|%\([^)]*\)[sbt]|%[sbt])
        |(?P<word>{_IDENT_START}{_IDENT_CONT}*)
        |(?P<number>0[XxOoBb][0-9A-Fa-f_]+|(?:[0-9][0-9_]*(?:\.(?!\.)[0-9_]*)?|\.[0-9][0-9_]*)
            (?:[Ee][+-]?[0-9]+)?)
        |(?P<op>.)
        """,
        re.VERBOSE | re.DOTALL,
    )


@functools.cache
def _block_edges() -> re.Pattern[str]:
    return re.compile(r"/\*|\*/")


def _block_end(sql: str, pos: int) -> int:
    """End of the ``/* */`` comment opened at ``pos``; they nest in
    PostgreSQL. Unterminated: the rest of the text (the server refuses it)."""
    depth = 0
    for edge in _block_edges().finditer(sql, pos):
        depth += 1 if edge.group() == "/*" else -1
        if depth == 0:
            return edge.end()
    return len(sql)


def tokens(sql: str) -> list[Token]:
    """Every token of ``sql``, spaces and comments included, in order."""
    match_at = _token_pattern().match
    result: list[Token] = []
    append = result.append
    pos, end = 0, len(sql)
    while pos < end:
        match = match_at(sql, pos)
        assert match is not None  # the last alternative matches any character
        kind = match.lastgroup
        stop = match.end()
        if kind == "line":
            kind = COMMENT
        elif kind == "block":
            kind, stop = COMMENT, _block_end(sql, pos)
        elif kind == "estring":
            kind = STRING
        elif kind == "dollar":
            delimiter = match.group()
            close = sql.find(delimiter, stop)
            kind, stop = STRING, (end if close < 0 else close + len(delimiter))
        append(Token(kind, pos, stop))  # type: ignore[arg-type]
        pos = stop
    return result


@functools.cache
def _placeholder_in_text() -> re.Pattern[str]:
    return re.compile(r"%(?:\([^)]*\))?[sbt]")


def hides_placeholder(sql: str, token: Token) -> bool:
    """True when a literal, comment or quoted name holds something the
    driver would replace as a placeholder (drivers do not parse SQL quoting:
    a value filled in there can change what the statement is)."""
    return bool(_placeholder_in_text().search(sql, token.start, token.end))


def identifier(sql: str, token: Token) -> str | None:
    """The name a WORD or QIDENT token stands for: unquoted names fold to
    lower case (ASCII letters only, as the server does), quoted ones are
    exact. None for other tokens, and for U& names this does not decode."""
    text = sql[token.start : token.end]
    if token.kind == WORD:
        return text.lower() if text.isascii() else _fold_ascii(text)
    if token.kind != QIDENT:
        return None
    if text[:1] in "Uu":
        return _unicode_identifier(text)
    if not text.endswith('"') or len(text) < 2:
        return None  # unterminated
    return text[1:-1].replace('""', '"')


def _fold_ascii(text: str) -> str:
    return "".join(c.lower() if c.isascii() else c for c in text)


@functools.cache
def _unicode_escape() -> re.Pattern[str]:
    return re.compile(r"\\(?:\\|([0-9A-Fa-f]{4})|\+([0-9A-Fa-f]{6}))")


def _unicode_identifier(text: str) -> str | None:
    # U&"d\0061t\+000061" with the default escape character; a UESCAPE
    # clause after it changes the escape, which is reported by the caller
    # seeing the UESCAPE word (we return the undecoded name: never a match).
    body = text[3:-1] if text.endswith('"') and len(text) >= 4 else None
    if body is None:
        return None
    body = body.replace('""', '"')

    def decode(match: re.Match[str]) -> str:
        code = match.group(1) or match.group(2)
        return chr(int(code, 16)) if code else "\\"

    try:
        return _unicode_escape().sub(decode, body)
    except (ValueError, OverflowError):
        return None
