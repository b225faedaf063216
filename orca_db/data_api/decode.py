"""Data API results as the Python values psycopg gives Django.

Each column's ``typeName`` (PostgreSQL's type name, ``_int4`` for an
``int4[]``) picks the conversion once per result; then each ``Field`` is
one dict lookup and, for the types the Data API sends as text, one parse.
What Django's PostgreSQL backend asks of psycopg is kept: ``jsonb``,
``inet`` and ``cidr`` stay text (Django parses them), ``json`` is parsed,
``timestamptz`` is an aware datetime in UTC, ``bytea`` is ``bytes``.
"""

from __future__ import annotations

import datetime
import decimal
import json
import re
import uuid
from collections import namedtuple
from collections.abc import Callable
from typing import Any, Final

from . import ranges
from .errors import DataError

#: ``cursor.description`` entries: the DB-API's seven fields, by name too
#: (Django's PostgreSQL introspection reads ``type_code``, ``internal_size``,
#: ``precision`` and ``scale`` by name).
_Column = namedtuple("_Column", "name type_code display_size internal_size precision scale null_ok")


class Column(_Column):
    """A ``cursor.description`` entry; ``type_display`` is the type's name
    (psycopg 3.2's attribute, which Django 6.1's introspection reads)."""

    type_display: str = ""


#: PostgreSQL's built-in type OIDs, by name: ``type_code`` is the OID, as
#: with psycopg, so Django's introspection (keyed by OID) works unchanged.
TYPE_OIDS: Final = {
    "bool": 16, "bytea": 17, "char": 18, "name": 19, "int8": 20, "int2": 21,
    "int4": 23, "regproc": 24, "text": 25, "oid": 26, "xid": 28, "json": 114,
    "xml": 142, "cidr": 650, "float4": 700, "float8": 701, "money": 790,
    "macaddr": 829, "inet": 869, "bpchar": 1042, "varchar": 1043, "date": 1082,
    "time": 1083, "timestamp": 1114, "timestamptz": 1184, "interval": 1186,
    "timetz": 1266, "bit": 1560, "varbit": 1562, "numeric": 1700, "regclass": 2205,
    "uuid": 2950, "tsvector": 3614, "jsonb": 3802, "int4range": 3904,
    "numrange": 3906, "tsrange": 3908, "tstzrange": 3910, "daterange": 3912,
    "int8range": 3926, "xid8": 5069,
    "_bool": 1000, "_bytea": 1001, "_char": 1002, "_name": 1003, "_int2": 1005,
    "_int4": 1007, "_text": 1009, "_bpchar": 1014, "_varchar": 1015, "_int8": 1016,
    "_float4": 1021, "_float8": 1022, "_oid": 1028, "_inet": 1041, "_cidr": 651,
    "_json": 199, "_timestamp": 1115, "_date": 1182, "_time": 1183,
    "_timestamptz": 1185, "_interval": 1187, "_numeric": 1231, "_timetz": 1270,
    "_uuid": 2951, "_jsonb": 3807,
}  # fmt: skip
# JDBC reports serial columns by their pseudo-type name.
_ALIASES: Final = {"serial": "int4", "bigserial": "int8", "smallserial": "int2"}


def description(metadata: list[dict[str, Any]]) -> list[Column]:
    columns = []
    for meta in metadata:
        type_name = _type_name(meta)
        precision = meta.get("precision") or None
        sized = type_name in ("varchar", "bpchar", "bit", "varbit")
        column = Column(
            meta.get("label") or meta.get("name") or "?column?",
            TYPE_OIDS.get(type_name),
            None,
            precision if sized else None,
            precision if type_name == "numeric" else None,
            meta.get("scale") if type_name == "numeric" else None,
            None if meta.get("nullable") in (None, 2) else bool(meta.get("nullable")),
        )
        column.type_display = type_name
        columns.append(column)
    return columns


def rows(
    metadata: list[dict[str, Any]],
    records: list[list[dict]],
    *,
    aware: bool = True,
    range_factory: Callable[..., Any] | None = None,
    json_text: bool = False,
) -> list[tuple]:
    """The records as tuples; ``aware=False``: ``timestamptz`` values are
    naive (in UTC), as Django's PostgreSQL backend reads them with
    ``USE_TZ = False``. Ranges are made by ``range_factory(type name, lower,
    upper, bounds, empty)`` (default: psycopg's ``Range``). ``json_text``:
    ``json`` values stay text, as ``jsonb`` ones do (SQLAlchemy's JSON
    types parse both)."""
    converters = []
    parsers = _PARSERS[aware, json_text]
    for meta in metadata:
        type_name = _type_name(meta)
        if type_name in ranges.SUBTYPES:
            bound = parsers[ranges.SUBTYPES[type_name]]
            converters.append(ranges.converter(type_name, bound, range_factory))
        elif type_name[1:] in ranges.SUBTYPES:  # an array of ranges
            bound = parsers[ranges.SUBTYPES[type_name[1:]]]
            element = ranges.text_converter(type_name[1:], bound, range_factory)
            converters.append(_converter(type_name, parsers, element))
        else:
            converters.append(_converter(type_name, parsers))
    return [
        tuple(convert(field) for convert, field in zip(converters, record, strict=True))
        for record in records
    ]


def _type_name(meta: dict[str, Any]) -> str:
    name = str(meta.get("typeName") or "").strip('"').lower()
    return _ALIASES.get(name, name)


# ----- one column ----------------------------------------------------------------


def _converter(
    type_name: str,
    parsers: dict[str, Callable[[str], Any]],
    element: Callable[[str], Any] | None = None,
) -> Callable[[dict], Any]:
    if type_name.startswith("_"):
        element = element or parsers.get(type_name[1:])

        def array(field: dict) -> Any:
            if "arrayValue" in field:
                return _array(field["arrayValue"], element)
            return _plain(field)

        return array
    parse = parsers.get(type_name)
    if parse is None:
        return _plain

    def convert(field: dict) -> Any:
        value = field.get("stringValue")
        if value is None:
            return _plain(field)
        try:
            return parse(value)
        except (ValueError, decimal.InvalidOperation) as error:
            raise DataError(f"cannot read {value!r} as {type_name}: {error}") from None

    return convert


def _plain(field: dict) -> Any:
    """The value of a ``Field`` as JSON gave it (bytes for a blob)."""
    if field.get("isNull"):
        return None
    for key, value in field.items():
        if key == "arrayValue":
            return _array(value, None)
        if key != "isNull":
            return value
    return None


def _array(value: dict, element: Callable[[str], Any] | None) -> list:
    if "arrayValues" in value:
        return [_array(inner, element) for inner in value["arrayValues"]]
    for key, items in value.items():
        if key == "stringValues" and element is not None:
            return [None if item is None else element(item) for item in items]
        return list(items)
    return []


# ----- text forms ----------------------------------------------------------------

_UTC: Final = datetime.UTC


def _timestamptz(text: str) -> datetime.datetime:
    value = _timestamp(text)
    # Without an offset the Data API's text is UTC (the session time zone).
    return value.replace(tzinfo=_UTC) if value.tzinfo is None else value.astimezone(_UTC)


def _timestamp(text: str) -> datetime.datetime:
    if text.endswith(" BC") or text in ("infinity", "-infinity"):
        raise ValueError("outside Python's datetime range")
    return datetime.datetime.fromisoformat(_pad_offset(text))


def _time(text: str) -> datetime.time:
    return datetime.time.fromisoformat(_pad_offset(text))


def _pad_offset(text: str) -> str:
    # PostgreSQL writes "+02" for a whole-hour offset; Python wants "+02:00".
    if len(text) > 3 and text[-3] in "+-" and text[-2:].isdigit():
        return text + ":00"
    return text


_INTERVAL_PART: Final = re.compile(
    r"([+-]?\d+(?:\.\d+)?)\s*(years?|mons?|months?|days?|hours?|mins?|minutes?|secs?|seconds?)"
    r"|([+-])?(\d+):(\d\d):(\d\d(?:\.\d+)?)"
)
_INTERVAL_UNITS: Final = {
    "y": ("days", 365),
    "mo": ("days", 30),  # as psycopg does: a month is 30 days
    "d": ("days", 1),
    "h": ("seconds", 3600),
    "mi": ("seconds", 60),
    "s": ("seconds", 1),
}


def _interval(text: str) -> datetime.timedelta:
    """PostgreSQL's ``postgres`` interval style (``1 day 02:03:04.5``) and
    JDBC's (``0 years 0 mons 1 days 2 hours 3 mins 4.5 secs``)."""
    days = decimal.Decimal(0)
    seconds = decimal.Decimal(0)
    found = False
    for match in _INTERVAL_PART.finditer(text):
        found = True
        if match.group(1) is not None:
            amount = decimal.Decimal(match.group(1))
            unit = match.group(2)
            key = "mo" if unit.startswith("mo") else "mi" if unit.startswith("mi") else unit[0]
            field, factor = _INTERVAL_UNITS[key]
            if field == "days":
                days += amount * factor
            else:
                seconds += amount * factor
        else:
            sign = -1 if match.group(3) == "-" else 1
            hours, minutes, secs = match.group(4, 5, 6)
            seconds += sign * (int(hours) * 3600 + int(minutes) * 60 + decimal.Decimal(secs))
    if not found:
        raise ValueError("not an interval")
    if text.rstrip().endswith(" ago"):
        days, seconds = -days, -seconds
    micros = (days * 86400 + seconds) * 1_000_000
    return datetime.timedelta(microseconds=int(micros.to_integral_value()))


_TEXT_PARSERS: Final[dict[str, Callable[[str], Any]]] = {
    "numeric": decimal.Decimal,
    "date": datetime.date.fromisoformat,
    "time": _time,
    "timetz": _time,
    "timestamp": _timestamp,
    "timestamptz": _timestamptz,
    "interval": _interval,
    "uuid": uuid.UUID,
    "json": json.loads,
    "int2": int,
    "int4": int,
    "int8": int,
    "oid": int,
    "float4": float,
    "float8": float,
}


def _hstore(text: str) -> dict[str, str | None]:
    """hstore's text (``"a"=>"1", "b"=>NULL``) as the dict psycopg gives."""
    result: dict[str, str | None] = {}
    for match in _HSTORE_PAIR.finditer(text):
        key = _unescape(match.group(1))
        result[key] = None if match.group(2) is None else _unescape(match.group(2))
    return result


def _unescape(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text)


_HSTORE_PAIR: Final = re.compile(r'"((?:[^"\\]|\\.)*)"\s*=>\s*(?:"((?:[^"\\]|\\.)*)"|NULL)')
_TEXT_PARSERS["hstore"] = _hstore

_NAIVE_PARSERS: Final = {
    **_TEXT_PARSERS,
    "timestamptz": lambda text: _timestamptz(text).replace(tzinfo=None),
}
_PARSERS: Final = {
    (True, False): _TEXT_PARSERS,
    (False, False): _NAIVE_PARSERS,
    (True, True): {k: v for k, v in _TEXT_PARSERS.items() if k != "json"},
    (False, True): {k: v for k, v in _NAIVE_PARSERS.items() if k != "json"},
}
