"""Parse trees from PostgreSQL's own parser (pglast), for the precise
answers. pglast is imported here on first use only: never at import time,
which runs on every Lambda cold start."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from . import lexer


def statement_text(sql: object) -> str | None:
    """``sql`` as the text the analyses read: ``str`` as it is, ``bytes``
    decoded (UTF-8, what does not decode replaced); ``None`` for anything
    else (``psycopg.sql.Composed`` and the like), of which nothing is known."""
    if isinstance(sql, str):
        return sql
    if isinstance(sql, bytes):
        return sql.decode("utf-8", "replace")
    return None


def driver_to_server(sql: str) -> tuple[str, bool]:
    """``sql`` as the server will see it once the driver has filled in the
    placeholders: ``%s`` / ``%(name)s`` / ``%b`` / ``%t`` become ``$1``,
    ``$2``... (one number per name), ``%%`` becomes ``%``. Also says whether
    a literal, comment or quoted name holds a placeholder (the driver would
    fill it in there too, and the statement would not be the one parsed)."""
    pieces: list[str] = []
    names: dict[str, int] = {}
    last, count, hidden = 0, 0, False
    for tok in lexer.tokens(sql):
        if tok.kind in (lexer.STRING, lexer.COMMENT, lexer.QIDENT):
            hidden = hidden or lexer.hides_placeholder(sql, tok)
        if tok.kind != lexer.PLACEHOLDER:
            continue
        text = sql[tok.start : tok.end]
        pieces.append(sql[last : tok.start])
        if text == "%%":
            pieces.append("%")
        else:
            name = text[2:-2] if text.startswith("%(") else None
            if name is None or name not in names:
                count += 1
                if name is not None:
                    names[name] = count
            pieces.append(f"${names[name] if name is not None else count}")
        last = tok.end
    pieces.append(sql[last:])
    return "".join(pieces), hidden


def parse(sql: str) -> tuple[Any, ...] | None:
    """The raw statements of ``sql`` (pglast ``RawStmt`` nodes, placeholders
    converted), or None when the server's grammar refuses the text."""
    from pglast import parser

    try:
        return tuple(parser.parse_sql(driver_to_server(sql)[0]))
    except parser.ParseError:
        return None


def walk(root: Any) -> Iterator[Any]:
    """Every pglast node under ``root`` (itself included), depth first, in
    the order of the node's fields (roughly the order of the text)."""
    from pglast.ast import Node

    stack = [root]
    while stack:
        item = stack.pop()
        if isinstance(item, Node):
            yield item
            children = []
            for slot in getattr(type(item), "__slots__", ()):
                if slot == "ancestors":
                    continue  # a back reference, not a child
                value = getattr(item, slot, None)
                if isinstance(value, Node | tuple | list):
                    children.append(value)
            stack.extend(reversed(children))
        elif isinstance(item, tuple | list):
            stack.extend(reversed(item))


def names(items: Any) -> list[str]:
    """The strings of a pglast name list (``funcname``, ``names``, ...)."""
    return [getattr(item, "sval", "") for item in items or ()]


def node_type(node: Any) -> str:
    return type(node).__name__
