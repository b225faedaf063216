"""The Data API's JSON shapes, read and written by the local endpoint:
parameters to SQL the driver can run, PostgreSQL's text results to
``Field``\\s and ``ColumnMetadata`` (botocore's ``rds-data`` service model).

Parameters are typed as the Data API types them (JDBC underneath): a
``stringValue`` is a ``varchar`` unless its ``typeHint`` says otherwise, a
``longValue`` an ``int8``, a ``doubleValue`` a ``float8``. The endpoint writes
each one as a cast literal (``CAST('abc' AS varchar)``), so PostgreSQL refuses a
string where a ``uuid`` is needed, as it does behind the real Data API.
"""

from __future__ import annotations

import base64
import datetime
from typing import Any, Final

from orca_db.data_api.sqltext import named_parameters

_HINTS: Final = {
    "DATE": "date",
    "TIME": "time",
    "TIMESTAMP": "timestamp",
    "DECIMAL": "numeric",
    "UUID": "uuid",
    "JSON": "json",
}
#: java.sql.Types codes, as JDBC reports PostgreSQL's types.
JDBC_TYPES: Final = {
    "bool": -7, "int2": 5, "int4": 4, "int8": -5, "oid": -5, "float4": 7, "float8": 8,
    "numeric": 2, "varchar": 12, "text": 12, "name": 12, "bpchar": 1, "char": 1,
    "date": 91, "time": 92, "timetz": 92, "timestamp": 93, "timestamptz": 93, "bytea": -2,
}  # fmt: skip
_LONGS: Final = frozenset({"int2", "int4", "int8", "oid", "xid"})
_DOUBLES: Final = frozenset({"float4", "float8"})


class BadRequest(Exception):
    """A request the Data API refuses before running anything."""


def bind(sql: str, parameters: list[dict[str, Any]] | None) -> tuple[str, list | None]:
    """The SQL for the driver (``%s`` placeholders, ``%`` escaped) and its
    arguments; ``None`` arguments when the request has no parameters."""
    if not parameters:
        return sql, None
    values: dict[str, tuple[Any, str | None]] = {}
    for parameter in parameters:
        name = parameter.get("name")
        if not name:
            raise BadRequest("Parameter name is required")
        values[name] = _value(parameter)
    parts: list[str] = []
    args: list[Any] = []
    position = 0
    for start, end, name in named_parameters(sql):
        if name not in values:
            raise BadRequest(f"No value specified for parameter :{name}")
        parts.append(sql[position:start].replace("%", "%%"))
        value, sql_type = values[name]
        # CAST(), not ::, which binds tighter than a minus sign: -1::int8 is
        # -(1::int8), and -9223372036854775808::int8 overflows.
        parts.append("%s" if sql_type is None else f"CAST(%s AS {sql_type})")
        args.append(value)
        position = end
    parts.append(sql[position:].replace("%", "%%"))
    return "".join(parts), args


def _value(parameter: dict[str, Any]) -> tuple[Any, str | None]:
    field = parameter.get("value") or {}
    if len(field) != 1:
        raise BadRequest("Exactly one value type must be set in a Field")
    ((kind, value),) = field.items()
    hint = parameter.get("typeHint")
    if hint is not None and (hint not in _HINTS or kind != "stringValue"):
        raise BadRequest(f"typeHint {hint} applies to a stringValue of a known type")
    if kind == "isNull":
        return None, None
    if kind == "stringValue":
        return value, _HINTS[hint] if hint else "varchar"
    if kind == "longValue":
        return int(value), "int8"
    if kind == "doubleValue":
        return float(value), "float8"
    if kind == "booleanValue":
        return bool(value), "bool"
    if kind == "blobValue":
        return base64.b64decode(value), "bytea"
    if kind == "arrayValue":
        raise BadRequest("Array parameters are not supported.")
    raise BadRequest(f"Unknown value type {kind}")


# ----- results ---------------------------------------------------------------------


def metadata(columns: list[tuple], types: dict[int, str]) -> list[dict[str, Any]]:
    result = []
    for name, oid, precision, scale in columns:
        type_name = types.get(oid, "unknown")
        meta: dict[str, Any] = {
            "name": name,
            "label": name,
            "typeName": type_name,
            "type": 2003 if type_name.startswith("_") else JDBC_TYPES.get(type_name, 1111),
            "nullable": 2,  # columnNullableUnknown: a result column may hold NULL
            "precision": precision,
            "scale": scale,
            "isSigned": type_name in _LONGS or type_name in _DOUBLES or type_name == "numeric",
            "isAutoIncrement": False,
            "isCurrency": type_name == "money",
            "isCaseSensitive": type_name in ("text", "varchar", "bpchar", "name", "char"),
            "schemaName": "",
            "tableName": "",
        }
        if type_name.startswith("_"):
            meta["arrayBaseColumnType"] = JDBC_TYPES.get(type_name[1:], 1111)
        result.append(meta)
    return result


def records(columns: list[tuple], rows: list[tuple], types: dict[int, str]) -> list[list[dict]]:
    names = [types.get(column[1], "unknown") for column in columns]
    return [[field(text, name) for text, name in zip(row, names, strict=True)] for row in rows]


def field(text: str | None, type_name: str) -> dict[str, Any]:
    if text is None:
        return {"isNull": True}
    if type_name.startswith("_") and text.endswith("}"):
        return {"arrayValue": _array_value(_parse_array(text), type_name[1:])}
    if type_name in _LONGS:
        return {"longValue": int(text)}
    if type_name in _DOUBLES:
        return {"doubleValue": float(text)}
    if type_name == "bool":
        return {"booleanValue": text == "t"}
    if type_name == "bytea":
        return {"blobValue": base64.b64encode(_bytea(text)).decode()}
    if type_name == "timestamptz":
        return {"stringValue": _utc(text)}
    return {"stringValue": text}


def _bytea(text: str) -> bytes:
    if text.startswith("\\x"):
        return bytes.fromhex(text[2:])
    return text.encode("latin-1")  # bytea_output = escape: not set by the endpoint


def _utc(text: str) -> str:
    """A timestamptz as the Data API writes it: in UTC, without an offset."""
    try:
        raw = text
        if len(raw) > 3 and raw[-3] in "+-" and raw[-2:].isdigit():
            raw += ":00"
        value = datetime.datetime.fromisoformat(raw).astimezone(datetime.UTC)
    except ValueError:
        return text  # infinity, BC dates: as PostgreSQL wrote them
    return value.replace(tzinfo=None).isoformat(sep=" ")


def _array_value(items: list, element: str) -> dict[str, Any]:
    if any(isinstance(item, list) for item in items):
        return {"arrayValues": [_array_value(item, element) for item in items]}
    if element in _LONGS:
        return {"longValues": [None if v is None else int(v) for v in items]}
    if element in _DOUBLES:
        return {"doubleValues": [None if v is None else float(v) for v in items]}
    if element == "bool":
        return {"booleanValues": [None if v is None else v == "t" for v in items]}
    if element == "timestamptz":
        return {"stringValues": [None if v is None else _utc(v) for v in items]}
    return {"stringValues": items}


def _parse_array(text: str) -> list:
    """PostgreSQL's array output (``{1,"a b",NULL,{2,3}}``) as nested lists
    of strings and ``None``."""
    if text.startswith("["):  # [0:2]={...}: lower bounds other than 1
        text = text[text.index("=") + 1 :]
    stack: list[list] = []
    result: list = []
    position = 0
    length = len(text)
    while position < length:
        char = text[position]
        if char == "{":
            stack.append([])
            position += 1
        elif char == "}":
            done = stack.pop()
            if stack:
                stack[-1].append(done)
            else:
                result = done
            position += 1
        elif char == ",":
            position += 1
        elif char == '"':
            position += 1
            value = []
            while text[position] != '"':
                if text[position] == "\\":
                    position += 1
                value.append(text[position])
                position += 1
            stack[-1].append("".join(value))
            position += 1
        else:
            end = position
            while text[end] not in ",}":
                end += 1
            token = text[position:end]
            stack[-1].append(None if token == "NULL" else token)
            position = end
    return result
