"""Python values as Data API parameters: a ``Field`` and a ``typeHint``.

The Data API sends a ``stringValue`` as ``varchar`` (it is JDBC underneath,
with its default ``stringtype``), so a string is only accepted where text
is. Types with a ``typeHint`` (DATE, TIME, TIMESTAMP, DECIMAL, UUID, JSON)
are sent with it; the others get an explicit ``CAST`` around the parameter,
which PostgreSQL applies to the varchar whatever the session settings are.
"""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import ipaddress
import math
import uuid
from collections.abc import Callable
from typing import Any, Final

from . import pgtext
from .errors import ProgrammingError

#: Where the parameter's ``:name`` goes in a template.
SLOT: Final = "\x00"
_INT4_MIN, _INT4_MAX = -(2**31), 2**31 - 1
_INT8_MIN, _INT8_MAX = -(2**63), 2**63 - 1


@dataclasses.dataclass(frozen=True, slots=True)
class Parameter:
    #: The Data API ``Field`` (``{"longValue": 1}``), or None when the value
    #: is written into the SQL text (only constants: an empty array).
    field: dict[str, Any] | None
    hint: str | None = None
    template: str = SLOT

    def placeholder(self, name: str, cast_follows: bool = False) -> str:
        """The parameter in the SQL text. When the SQL casts it itself
        (``%s::int8range``), the driver's own cast is left out: it could
        only get in the way (no cast from int4range to int8range exists),
        and the string casts to whatever the SQL asks."""
        if cast_follows and self.field is not None and SLOT in self.template:
            return ":" + name
        return self.template.replace(SLOT, ":" + name)

    def as_dict(self, name: str) -> dict[str, Any]:
        data: dict[str, Any] = {"name": name, "value": self.field}
        if self.hint:
            data["typeHint"] = self.hint
        return data


_NULL: Final = Parameter({"isNull": True})


def encode(value: Any) -> Parameter:
    """The parameter for ``value``; ``ProgrammingError`` for a type no
    PostgreSQL driver would adapt either."""
    if value is None:
        return _NULL
    encoder = _ENCODERS.get(type(value))
    if encoder is None:
        encoder = _find_encoder(value)
    return encoder(value)


def _cast(text: str, sql_type: str) -> Parameter:
    return Parameter({"stringValue": text}, template=f"CAST({SLOT} AS {sql_type})")


def _bool(value: bool) -> Parameter:
    return Parameter({"booleanValue": value})


def _int(value: int) -> Parameter:
    # A longValue is a bigint, and PostgreSQL resolves functions and
    # operators by type: repeat(text, bigint), jsonb -> bigint do not exist.
    # An integer literal is an int4 when it fits (psycopg2 sends literals,
    # psycopg 3 the smallest type): so is this parameter.
    if _INT4_MIN <= value <= _INT4_MAX:
        return Parameter({"longValue": int(value)}, template=f"CAST({SLOT} AS integer)")
    if _INT8_MIN <= value <= _INT8_MAX:
        return Parameter({"longValue": int(value)})
    return _cast(str(int(value)), "numeric")


def _sized_int(sql_type: str) -> Callable[[Any], Parameter]:
    def encode(value: int) -> Parameter:
        if sql_type == "bigint" and _INT8_MIN <= value <= _INT8_MAX:
            return Parameter({"longValue": int(value)})  # a longValue is a bigint
        if _INT8_MIN <= value <= _INT8_MAX:
            return Parameter({"longValue": int(value)}, template=f"CAST({SLOT} AS {sql_type})")
        return _cast(str(int(value)), "numeric")

    return encode


def _float(value: float) -> Parameter:
    if math.isfinite(value):
        return Parameter({"doubleValue": float(value)})
    return _cast(pgtext.float_text(value), "double precision")  # JSON has no NaN


def _decimal(value: decimal.Decimal) -> Parameter:
    if value.is_finite():
        return Parameter({"stringValue": str(value)}, hint="DECIMAL")
    return _cast(pgtext.decimal_text(value), "numeric")  # NaN, Infinity: not for DECIMAL


def _str(value: str) -> Parameter:
    return Parameter({"stringValue": str(value)})


def _bytes(value: bytes | bytearray | memoryview) -> Parameter:
    return Parameter({"blobValue": bytes(value)})


def _datetime(value: datetime.datetime) -> Parameter:
    if value.tzinfo is None or value.utcoffset() is None:
        return Parameter({"stringValue": pgtext.timestamp_text(value)}, hint="TIMESTAMP")
    # TIMESTAMP carries no offset, and a timestamp becomes a timestamptz in
    # the session's time zone (the cluster's `timezone` parameter): the cast
    # keeps the offset, whatever that parameter says.
    return _cast(pgtext.timestamp_text(value), "timestamptz")


def _date(value: datetime.date) -> Parameter:
    return Parameter({"stringValue": value.isoformat()}, hint="DATE")


def _time(value: datetime.time) -> Parameter:
    if value.tzinfo is None:
        return Parameter({"stringValue": value.isoformat()}, hint="TIME")
    return _cast(value.isoformat(), "timetz")


def _timedelta(value: datetime.timedelta) -> Parameter:
    return _cast(pgtext.interval_text(value), "interval")


def _uuid(value: uuid.UUID) -> Parameter:
    return Parameter({"stringValue": str(value)}, hint="UUID")


def _inet(value: Any) -> Parameter:
    network = isinstance(value, (ipaddress.IPv4Network, ipaddress.IPv6Network))
    return _cast(str(getattr(value, "addr", value)), "cidr" if network else "inet")


def _json(value: Any) -> Parameter:
    text, sql_type = pgtext.json_text(value)
    # The hint makes the Data API accept the string as JSON; the cast makes
    # it jsonb where Django expects jsonb (the hint's own type is json).
    return Parameter({"stringValue": text}, hint="JSON", template=f"CAST({SLOT} AS {sql_type})")


def _range(value: Any) -> Parameter:
    # The range type from the bounds, as psycopg picks it; Django writes
    # saved values with a cast of its own (%s::int8range), which wins.
    sql_type = pgtext.range_type(value)
    if sql_type is None:  # empty or unbounded: nothing says which
        return Parameter({"stringValue": pgtext.range_text(value)})
    return _cast(pgtext.range_text(value), sql_type)


def _hstore(value: dict) -> Parameter:
    # Only django.contrib.postgres's HStoreField passes a dict (psycopg
    # adapts one only once hstore is registered).
    return _cast(pgtext.hstore_text(value), "hstore")


def _array(value: list | tuple) -> Parameter:
    # The Data API takes no array parameters: the array travels as its
    # PostgreSQL text and is cast to the type of its first element.
    element = pgtext.first_leaf(value)
    if element is None:
        # Only NULLs (or nothing): a constant, written as an untyped literal
        # that PostgreSQL fits to whatever array it meets, as psycopg2 does.
        return Parameter(None, template=f"'{pgtext.array_text(value, pgtext.element_text)}'")
    sql_type = pgtext.element_type(element, value)
    return _cast(pgtext.array_text(value, pgtext.element_text), sql_type + "[]")


_ENCODERS: dict[type, Callable[[Any], Parameter]] = {
    bool: _bool,
    int: _int,
    float: _float,
    decimal.Decimal: _decimal,
    str: _str,
    bytes: _bytes,
    bytearray: _bytes,
    memoryview: _bytes,
    datetime.datetime: _datetime,
    datetime.date: _date,
    datetime.time: _time,
    datetime.timedelta: _timedelta,
    uuid.UUID: _uuid,
    list: _array,
    tuple: _array,
    dict: _hstore,
}


def _find_encoder(value: Any) -> Callable[[Any], Parameter]:
    """Subclasses (Django's SafeString, psycopg's Int4) and the wrappers
    Django's PostgreSQL operations make (Jsonb, Inet) are matched once per
    type and remembered."""
    kind = type(value)
    sized = pgtext.INT_WRAPPERS.get(kind.__name__)
    if sized is not None and isinstance(value, int):
        # psycopg 3's Int2/Int4/Int8, which Django's operations wrap an
        # integer field's values in: they say the column's type.
        _ENCODERS[kind] = _sized_int(sized)
        return _ENCODERS[kind]
    for base in kind.__mro__[1:]:
        if base in _ENCODERS and base is not object:
            _ENCODERS[kind] = _ENCODERS[base]
            return _ENCODERS[base]
    if pgtext.is_json_wrapper(value):
        _ENCODERS[kind] = _json
        return _json
    if isinstance(value, (ipaddress._BaseAddress, ipaddress._BaseNetwork)) or (
        kind.__name__ == "Inet" and hasattr(value, "addr")
    ):
        _ENCODERS[kind] = _inet
        return _inet
    if pgtext.is_range(value):
        _ENCODERS[kind] = _range
        return _range
    raise ProgrammingError(f"cannot adapt type {kind.__name__!r} to a Data API parameter")
