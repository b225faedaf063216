"""Django's ``%s`` / ``%(name)s`` placeholders as Data API parameters.

The rules are psycopg's, because Django writes its SQL for psycopg: with
parameters (even an empty list), ``%s`` and ``%(name)s`` are placeholders
and ``%%`` is a literal ``%`` *everywhere*, inside quoted literals too (so
Django writes ``LIKE '%%' || ...``); without parameters (``None``) the text
is sent as it is. Each placeholder becomes a named parameter ``:p1``,
``:p2``... that the Data API binds with a type; the encoder may wrap it
(``CAST(:p1 AS jsonb)``) where no ``typeHint`` says the type.

The Data API reads ``:name`` outside quoted literals, so a placeholder right
after a ``:`` (an array slice ``a[%s:%s]``) gets a space, or ``::p2`` would
read as a cast.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping, Sequence
from typing import Any

from .encode import Parameter, encode
from .errors import ProgrammingError

#: A parsed SQL text: the chunks between placeholders (one more than there
#: are placeholders) and each placeholder's key: ``None`` for ``%s``, the
#: name for ``%(name)s``.
Template = tuple[tuple[str, ...], tuple[str | None, ...]]

_NULL_FIELD = {"isNull": True}
_IDENTIFIER_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_$")


@functools.lru_cache(maxsize=1024)
def parse(sql: str) -> Template:
    """Split ``sql`` at its placeholders (Django sends the same few hundred
    texts over and over: cached)."""
    chunks: list[str] = []
    keys: list[str | None] = []
    current: list[str] = []
    start = 0
    length = len(sql)
    while True:
        index = sql.find("%", start)
        if index < 0:
            current.append(sql[start:])
            break
        current.append(sql[start:index])
        if index + 1 >= length:
            raise ProgrammingError("incomplete placeholder: '%' at the end of the query")
        mark = sql[index + 1]
        if mark == "%":
            current.append("%")
            start = index + 2
        elif mark in "sbt":  # psycopg 3 also reads %b and %t
            chunks.append("".join(current))
            current = []
            keys.append(None)
            start = index + 2
        elif mark == "(":
            end = sql.find(")", index)
            if end < 0 or end + 1 >= length or sql[end + 1] not in "sbt":
                raise ProgrammingError(f"incomplete placeholder: {sql[index : index + 20]!r}")
            chunks.append("".join(current))
            current = []
            keys.append(sql[index + 2 : end])
            start = end + 2
        else:
            raise ProgrammingError(
                f"only '%s', '%(name)s' and '%%' are placeholders, not {sql[index : index + 2]!r}"
            )
    chunks.append("".join(current))
    named = {key is not None for key in keys}
    if len(named) > 1:
        raise ProgrammingError("the query mixes %s and %(name)s placeholders")
    return tuple(chunks), tuple(keys)


def bind(sql: str, params: Sequence[Any] | Mapping[str, Any] | None) -> tuple[str, list[dict]]:
    """The SQL text for the Data API and its ``parameters``."""
    if params is None:
        return sql, []
    chunks, keys = parse(sql)
    names, encoded = _encode(keys, _values(keys, params))
    return _assemble(chunks, names, encoded), _parameters(encoded)


def bind_many(sql: str, param_sets: Sequence[Any]) -> tuple[str, list[list[dict]]] | None:
    """One SQL text and the ``parameterSets`` of a batch, or ``None`` when
    the sets need different texts (an int in one, a string in another):
    the caller then runs them one by one. A NULL fits any cast: it takes
    the shape of the others."""
    chunks, keys = parse(sql)
    encoded_sets = [_encode(keys, _values(keys, params)) for params in param_sets]
    if not encoded_sets:
        return sql, []
    shapes: dict[str, str] = {}
    for _, encoded in encoded_sets:
        for name, parameter in encoded.items():
            if (
                parameter.field != _NULL_FIELD
                and shapes.setdefault(name, parameter.template) != parameter.template
            ):
                return None
    sets = []
    text = None
    for names, encoded in encoded_sets:
        for name, parameter in encoded.items():
            if parameter.field == _NULL_FIELD and name in shapes:
                encoded[name] = dataclasses.replace(parameter, template=shapes[name])
        this = _assemble(chunks, names, encoded)
        if text is not None and this != text:
            return None
        text = this
        sets.append(_parameters(encoded))
    assert text is not None
    return text, sets


def _encode(keys: tuple[str | None, ...], values: list[Any]) -> tuple[list[str], dict]:
    """Each placeholder's parameter name, and each name's encoded value. The
    same ``%(name)s`` twice is one parameter; names are always p1, p2... so
    that a key the Data API would not read (spaces, dots) still works."""
    names: list[str] = []
    by_key: dict[str, str] = {}
    encoded: dict[str, Parameter] = {}
    for position, (key, value) in enumerate(zip(keys, values, strict=True)):
        name = f"p{position + 1}" if key is None else by_key.setdefault(key, f"p{len(by_key) + 1}")
        names.append(name)
        if name not in encoded:
            encoded[name] = encode(value)
    return names, encoded


def _parameters(encoded: dict[str, Parameter]) -> list[dict]:
    # An inlined value (an empty array) has no parameter to send.
    return [p.as_dict(name) for name, p in encoded.items() if p.field is not None]


def _values(keys: tuple[str | None, ...], params: Any) -> list[Any]:
    if keys and keys[0] is not None:
        if not isinstance(params, Mapping):
            raise ProgrammingError("the query has %(name)s placeholders: pass a mapping")
        try:
            return [params[key] for key in keys]
        except KeyError as error:
            raise ProgrammingError(f"no value for placeholder %({error.args[0]})s") from None
    if isinstance(params, Mapping):
        if keys:
            raise ProgrammingError("the query has %s placeholders: pass a sequence")
        return []
    if isinstance(params, (str, bytes)):
        raise ProgrammingError("query parameters must be a sequence or a mapping, not a string")
    values = list(params)
    if len(values) != len(keys):
        raise ProgrammingError(
            f"the query has {len(keys)} placeholder(s) but {len(values)} parameter(s) were passed"
        )
    return values


def _assemble(chunks: tuple[str, ...], names: list[str], encoded: dict[str, Parameter]) -> str:
    parts = [chunks[0]]
    for index, name in enumerate(names):
        before = parts[-1]
        after = chunks[index + 1]
        placeholder = encoded[name].placeholder(name, after.lstrip().startswith("::"))
        if before.endswith(":"):
            placeholder = " " + placeholder
        if after and after[0] in _IDENTIFIER_CHARS:
            placeholder += " "
        parts.append(placeholder)
        parts.append(after)
    return "".join(parts)
