"""PostgreSQL's range types, read from their text (``[1,10)``, ``empty``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

#: Range type -> the type name of its bounds.
SUBTYPES: Final = {
    "int4range": "int4",
    "int8range": "int8",
    "numrange": "numeric",
    "daterange": "date",
    "tsrange": "timestamp",
    "tstzrange": "timestamptz",
}


def converter(
    type_name: str, parse: Callable[[str], Any], factory: Callable[..., Any] | None
) -> Callable:
    """A ``Field``'s range, its bounds read by ``parse``."""
    make = factory or _psycopg_range

    def convert(field: dict) -> Any:
        text = field.get("stringValue")
        if text is None:
            return None
        if text == "empty":
            return make(type_name, None, None, "[)", True)
        bounds = text[0] + text[-1]
        lower_text, _, upper_text = _split(text[1:-1])
        lower = parse(lower_text) if lower_text else None
        upper = parse(upper_text) if upper_text else None
        return make(type_name, lower, upper, bounds, False)

    return convert


def _split(inner: str) -> tuple[str, str, str]:
    """The two bounds of a range's text (quoted when they hold a comma)."""
    if inner.startswith('"'):
        end = inner.index('"', 1)
        return inner[1:end], ",", inner[end + 2 :].strip('"')
    lower, comma, upper = inner.partition(",")
    return lower, comma, upper.strip('"')


def _psycopg_range(type_name: str, lower: Any, upper: Any, bounds: str, empty: bool) -> Any:
    try:
        from psycopg.types.range import Range
    except ImportError:
        return (lower, upper, bounds) if not empty else "empty"
    return Range(lower, upper, bounds, empty=empty)


def text_converter(
    type_name: str, parse: Callable[[str], Any], factory: Callable[..., Any] | None
) -> Callable:
    """The same, from a range's text alone (an element of an array)."""
    convert = converter(type_name, parse, factory)
    return lambda text: convert({"stringValue": text})
