"""Python values in PostgreSQL's input syntax: what a cast of a varchar
parameter (``CAST(:p1 AS interval)``) reads, and array literals."""

from __future__ import annotations

import datetime
import decimal
import ipaddress
import json
import math
import uuid
from collections.abc import Callable
from typing import Any, Final

from .errors import ProgrammingError

_INT8_MIN, _INT8_MAX = -(2**63), 2**63 - 1
#: psycopg 3's int wrappers (psycopg.types.numeric), by class name.
INT_WRAPPERS: Final = {"Int2": "smallint", "Int4": "integer", "Int8": "bigint", "Oid": "oid"}


def is_json_wrapper(value: Any) -> bool:
    # psycopg 3's Json/Jsonb carry `obj`, psycopg2's Json (and Django's
    # Jsonb built on it) `adapted`; both carry `dumps`.
    return type(value).__name__ in ("Json", "Jsonb") and hasattr(value, "dumps")


def json_text(value: Any) -> tuple[str, str]:
    kind = type(value)
    if hasattr(value, "obj"):  # psycopg 3; dumps=None means its default
        text = (value.dumps or json.dumps)(value.obj)
        jsonb = kind.__name__ == "Jsonb"
    else:  # psycopg2
        text = value.dumps(value.adapted)
        jsonb = kind.__name__ == "Jsonb" or kind.__module__.startswith("django.")
    if isinstance(text, bytes):
        text = text.decode()
    return text, "jsonb" if jsonb else "json"


def float_text(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return repr(value)


def decimal_text(value: decimal.Decimal) -> str:
    if value.is_nan():
        return "NaN"
    if value.is_infinite():
        return "Infinity" if value > 0 else "-Infinity"
    return str(value)


def timestamp_text(value: datetime.datetime) -> str:
    return value.isoformat(sep=" ", timespec="microseconds")


def interval_text(value: datetime.timedelta) -> str:
    seconds = value.seconds + value.microseconds / 1_000_000
    return f"{value.days} days {seconds:.6f} seconds"


def first_leaf(value: Any) -> Any:
    for item in value:
        if isinstance(item, (list, tuple)):
            found = first_leaf(item)
            if found is not None:
                return found
        elif item is not None:
            return item
    return None


def element_type(element: Any, array: Any) -> str:
    if isinstance(element, bool):
        return "boolean"
    if isinstance(element, int):
        sized = INT_WRAPPERS.get(type(element).__name__)
        if sized is not None:
            return sized  # psycopg 3's Int8 (Django's choice for the column)
        if _ints_fit(array, 2**31):
            return "integer"  # as a literal ARRAY[1, 2] is
        return "bigint" if _ints_fit(array, 2**63) else "numeric"
    for kind, sql_type in _ELEMENT_TYPES:
        if isinstance(element, kind):
            if sql_type == "timestamp" and getattr(element, "tzinfo", None) is not None:
                return "timestamptz"
            return sql_type
    if is_json_wrapper(element):
        return json_text(element)[1]
    if isinstance(element, dict):
        return "hstore"
    if is_range(element):
        found = range_type(element)
        if found is not None:
            return found
    if isinstance(element, (ipaddress._BaseAddress, ipaddress._BaseNetwork)) or (
        type(element).__name__ == "Inet" and hasattr(element, "addr")  # psycopg2's
    ):
        return "inet"
    raise ProgrammingError(f"cannot adapt a list of {type(element).__name__!r}")


_ELEMENT_TYPES: Final = (
    (float, "double precision"),
    (decimal.Decimal, "numeric"),
    (str, "text"),
    ((bytes, bytearray, memoryview), "bytea"),
    (datetime.datetime, "timestamp"),
    (datetime.date, "date"),
    (datetime.time, "time"),
    (datetime.timedelta, "interval"),
    (uuid.UUID, "uuid"),
)


def _ints_fit(array: Any, limit: int) -> bool:
    for item in array:
        if isinstance(item, (list, tuple)):
            if not _ints_fit(item, limit):
                return False
        elif isinstance(item, int) and not -limit <= item < limit:
            return False
    return True


def element_text(item: Any) -> str | None:
    if item is None:
        return None
    if isinstance(item, bool):
        return "t" if item else "f"
    if isinstance(item, float):
        return float_text(item)
    if isinstance(item, decimal.Decimal):
        return decimal_text(item)
    if isinstance(item, (bytes, bytearray, memoryview)):
        return "\\x" + bytes(item).hex()
    if isinstance(item, datetime.datetime):
        return timestamp_text(item)
    if isinstance(item, (datetime.date, datetime.time)):
        return item.isoformat()
    if isinstance(item, datetime.timedelta):
        return interval_text(item)
    if is_json_wrapper(item):
        return json_text(item)[0]
    if isinstance(item, dict):
        return hstore_text(item)
    if is_range(item):
        return range_text(item)
    return str(getattr(item, "addr", item))


def array_text(value: Any, render: Callable[[Any], str | None]) -> str:
    parts = []
    for item in value:
        if isinstance(item, (list, tuple)):
            parts.append(array_text(item, render))
            continue
        text = render(item)
        if text is None:
            parts.append("NULL")
        else:
            escaped = text.replace("\\", "\\\\").replace('"', '\\"')
            parts.append(f'"{escaped}"')
    return "{" + ",".join(parts) + "}"


def is_range(value: Any) -> bool:
    """psycopg 3's ``Range`` and psycopg2's ranges (``NumericRange``...)."""
    return all(hasattr(value, name) for name in ("lower", "upper", "isempty", "lower_inc"))


def range_text(value: Any) -> str:
    if value.isempty:
        return "empty"
    lower = "" if value.lower is None else _quoted(element_text(value.lower) or "")
    upper = "" if value.upper is None else _quoted(element_text(value.upper) or "")
    return f"{'[' if value.lower_inc else '('}{lower},{upper}{']' if value.upper_inc else ')'}"


def hstore_text(value: dict) -> str:
    pairs = []
    for key, item in value.items():
        text = "NULL" if item is None else _quoted(str(item))
        pairs.append(f"{_quoted(str(key))}=>{text}")
    return ", ".join(pairs)


def _quoted(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def range_type(value: Any) -> str | None:
    bound = value.lower if value.lower is not None else value.upper
    if value.isempty or bound is None:
        return None
    if isinstance(bound, bool):
        return None
    if isinstance(bound, int):
        bounds = [b for b in (value.lower, value.upper) if b is not None]
        return "int4range" if all(-(2**31) <= b < 2**31 for b in bounds) else "int8range"
    if isinstance(bound, (float, decimal.Decimal)):
        return "numrange"
    if isinstance(bound, datetime.datetime):
        return "tstzrange"  # Django's range fields are all tstzrange, as its dumper says
    if isinstance(bound, datetime.date):
        return "daterange"
    return None
