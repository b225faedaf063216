"""The types of the Data API dialect (``orca_db.sqlalchemy.data_api``):
SQLAlchemy's PostgreSQL types, each parameter cast in the SQL text.

The Data API sends every string as ``varchar``, which PostgreSQL does not
assign to ``json``, an enum, ...: each bind is typed in the SQL
(SQLAlchemy's ``render_bind_cast``, as for psycopg 3 and pg8000). ``json``
values come back as text and are parsed by SQLAlchemy's JSON types, as
``jsonb`` values are; numbers come back as the driver reads them
(``Decimal`` for numeric, ``int``, ``float``: ``type_code`` is the OID).
"""

from __future__ import annotations

import decimal
from typing import Any

from sqlalchemy import util
from sqlalchemy.dialects.postgresql import ENUM, INTERVAL, JSON, JSONB
from sqlalchemy.dialects.postgresql.array import ARRAY as PGARRAY
from sqlalchemy.dialects.postgresql.base import (
    _DECIMAL_TYPES,
    _FLOAT_TYPES,
    _INT_TYPES,
    PGDialect,
    PGTypeCompiler,
)
from sqlalchemy.dialects.postgresql.json import JSONPathType
from sqlalchemy.dialects.postgresql.pg_catalog import INT2VECTOR, OIDVECTOR, _SpaceVector
from sqlalchemy.engine import processors
from sqlalchemy.sql import sqltypes

__all__ = ["COLSPECS", "AuroraDataApiTypeCompiler"]


class _String(sqltypes.String):
    render_bind_cast = True


class _NumericCommon:
    """Numeric and Float results (a mixin: SQLAlchemy 2.1's NumericCommon
    does not exist in 2.0)."""

    render_bind_cast = True
    asdecimal: bool
    _effective_decimal_return_scale: Any

    def result_processor(self, dialect: Any, coltype: Any) -> Any:
        # The driver gives Decimal for numeric, int for integers, float
        # for float4/8 (type_code is the OID, as with psycopg).
        if self.asdecimal:
            if coltype in _FLOAT_TYPES:
                return processors.to_decimal_processor_factory(
                    decimal.Decimal, self._effective_decimal_return_scale
                )
            return None
        if coltype in _DECIMAL_TYPES or coltype in _INT_TYPES:
            return processors.to_float
        return None


class _Numeric(_NumericCommon, sqltypes.Numeric):
    pass


class _Float(_NumericCommon, sqltypes.Float):
    pass


class _JSON(JSON):
    render_bind_cast = True


class _JSONB(JSONB):
    render_bind_cast = True


class _JSONIntIndexType(sqltypes.JSON.JSONIntIndexType):
    __visit_name__ = "json_int_index"
    render_bind_cast = True


class _JSONStrIndexType(sqltypes.JSON.JSONStrIndexType):
    __visit_name__ = "json_str_index"
    render_bind_cast = True


class _JSONPathType(JSONPathType):
    # ``#>`` and ``#>>`` take a text[]: the path's text is cast to it.
    render_bind_cast = True


class AuroraDataApiTypeCompiler(PGTypeCompiler):
    def visit_json_path(self, type_: Any, **kw: Any) -> str:
        return "TEXT[]"


class _Enum(ENUM):
    render_bind_cast = True


class _Interval(INTERVAL):
    render_bind_cast = True

    @classmethod
    def adapt_emulated_to_native(cls, interval: Any, **kw: Any) -> Any:  # type: ignore[override]
        # (SQLAlchemy's own INTERVAL differs from its supertype here.)
        return _Interval(precision=interval.second_precision)


class _TimeStamp(sqltypes.DateTime):
    render_bind_cast = True


class _Date(sqltypes.Date):
    render_bind_cast = True


class _Time(sqltypes.Time):
    render_bind_cast = True


class _Integer(sqltypes.Integer):
    render_bind_cast = True


class _SmallInteger(sqltypes.SmallInteger):
    render_bind_cast = True


class _BigInteger(sqltypes.BigInteger):
    render_bind_cast = True


class _Boolean(sqltypes.Boolean):
    render_bind_cast = True


class _Array(PGARRAY):
    render_bind_cast = True


class _Int2Vector(_SpaceVector, INT2VECTOR):
    """The Data API sends an ``int2vector`` as its text (``"0 1"``)."""


class _OidVector(_SpaceVector, OIDVECTOR):
    pass


#: PostgreSQL's types, each replaced by the one above.
COLSPECS = util.update_copy(
    PGDialect.colspecs,
    {
        sqltypes.String: _String,
        sqltypes.Numeric: _Numeric,
        sqltypes.Float: _Float,
        sqltypes.JSON: _JSON,
        JSON: _JSON,
        JSONB: _JSONB,
        sqltypes.JSON.JSONPathType: _JSONPathType,
        sqltypes.JSON.JSONIntIndexType: _JSONIntIndexType,
        sqltypes.JSON.JSONStrIndexType: _JSONStrIndexType,
        sqltypes.Interval: _Interval,
        INTERVAL: _Interval,
        sqltypes.DateTime: _TimeStamp,
        sqltypes.Date: _Date,
        sqltypes.Time: _Time,
        sqltypes.Integer: _Integer,
        sqltypes.SmallInteger: _SmallInteger,
        sqltypes.BigInteger: _BigInteger,
        sqltypes.Boolean: _Boolean,
        sqltypes.Enum: _Enum,
        ENUM: _Enum,
        sqltypes.ARRAY: _Array,
        PGARRAY: _Array,
        INT2VECTOR: _Int2Vector,
        OIDVECTOR: _OidVector,
    },
)
