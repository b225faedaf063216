"""Values written into SQL text, for what must be composed on the client:
DDL (PostgreSQL takes no parameters in ``CREATE TABLE ... DEFAULT %s``,
Django's schema editor quotes them itself) and ``last_executed_query``.

Each value is written as the parameter :mod:`.encode` would send, so a
value means the same whichever way it travels.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, Final

from .encode import encode
from .errors import DataError
from .placeholders import parse

_CAST: Final = re.compile(r"CAST\(\x00 AS ([^)]+)\)")
_HINT_TYPES: Final = {
    "DATE": "date",
    "TIME": "time",
    "TIMESTAMP": "timestamp",
    "DECIMAL": "numeric",
    "UUID": "uuid",
    "JSON": "json",
}


def quote(value: Any) -> str:
    """``value`` as an SQL literal: the type its parameter would have, as
    briefly as PostgreSQL reads it (``1``, ``'x'``, ``'{...}'::jsonb``)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(int(value))  # an integer literal is typed as the parameter is
    parameter = encode(value)
    if parameter.field is None:
        return parameter.template  # already a literal
    literal = _field_literal(parameter.field)
    cast = _CAST.fullmatch(parameter.template)
    if cast:
        return f"{literal}::{cast.group(1)}"
    if parameter.hint:
        return f"{literal}::{_HINT_TYPES[parameter.hint]}"
    return literal


def mogrify(sql: str, params: Sequence[Any] | Mapping[str, Any] | None) -> str:
    """``sql`` with its ``%s``/``%(name)s`` placeholders replaced by literals
    (psycopg's rules: no parameters, no substitution)."""
    if params is None:
        return sql
    chunks, keys = parse(sql)
    named = bool(keys) and keys[0] is not None
    values = [params[k] for k in keys] if named else list(params)  # type: ignore[index, call-overload]
    parts = [chunks[0]]
    for value, chunk in zip(values, chunks[1:], strict=True):
        parts.append(quote(value))
        parts.append(chunk)
    return "".join(parts)


def _field_literal(field: dict[str, Any]) -> str:
    ((kind, value),) = field.items()
    if kind == "isNull":
        return "NULL"
    if kind == "booleanValue":
        return "true" if value else "false"
    if kind in ("longValue", "doubleValue"):
        return repr(value)
    if kind == "blobValue":
        return f"'\\x{bytes(value).hex()}'::bytea"
    return string_literal(value)


def string_literal(text: str) -> str:
    if "\x00" in text:
        raise DataError("PostgreSQL text cannot contain NUL (0x00) characters")
    escaped = text.replace("'", "''")
    if "\\" in text:
        # E'' reads backslashes the same whatever standard_conforming_strings is.
        return "E'" + escaped.replace("\\", "\\\\") + "'"
    return "'" + escaped + "'"
