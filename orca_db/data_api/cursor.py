"""A DB-API 2.0 cursor over the RDS Data API: each ``execute`` is one call,
its whole result comes back at once (there are no server-side cursors)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from . import decode, errors
from .placeholders import bind, bind_many
from .sqltext import statement_count

if TYPE_CHECKING:
    from .connection import Connection


class Cursor:
    arraysize = 1
    #: ``timestamptz`` values as aware datetimes (in UTC), or naive ones.
    aware_timestamps = True
    #: ``json`` values as text (as ``jsonb`` ones always are), not parsed.
    json_text = False

    def __init__(self, connection: Connection):
        self.connection = connection
        self.description: list[decode.Column] | None = None
        self.rowcount = -1
        self.lastrowid = None
        self.closed = False
        #: The last statement and its parameters, as executed (after any
        #: execute wrapper), for ``last_executed_query``.
        self.query: tuple[str, Any] | None = None
        #: Makes the Python value of a range, from (type name, lower, upper,
        #: bounds, empty); None: psycopg's ``Range`` when installed.
        self.range_factory: Any = None
        self._rows: list[tuple] = []
        self._index = 0

    # ----- executing -----------------------------------------------------------

    def execute(self, operation: str, parameters: Sequence[Any] | Mapping[str, Any] | None = None):
        self._check_open()
        self.query = (operation, parameters)
        sql, bound = bind(_text(operation), parameters)
        _one_statement(sql)
        response = self.connection.execute(sql, bound, operation)
        self._load(response)
        return self

    def executemany(self, operation: str, seq_of_parameters: Sequence[Any]) -> None:
        self._check_open()
        param_sets = list(seq_of_parameters)
        self._reset()
        if not param_sets:
            self.rowcount = 0
            return
        text = _text(operation)
        batch = bind_many(text, param_sets)
        if batch is None:
            # The sets need different SQL texts (different types in a
            # column): one call each, as psycopg runs them one by one.
            total = 0
            for params in param_sets:
                self.execute(text, params)
                total += max(self.rowcount, 0)
            self._reset()
            self.rowcount = total
            return
        sql, sets = batch
        _one_statement(sql)
        self.connection.execute_batch(sql, sets, operation)
        self._reset()
        self.rowcount = -1  # BatchExecuteStatement does not say how many rows changed

    def callproc(self, procname: str, parameters: Sequence[Any] = ()) -> Sequence[Any]:
        if not procname.replace("_", "").replace(".", "").isalnum():
            raise errors.ProgrammingError(f"not a procedure name: {procname!r}")
        placeholders = ", ".join(["%s"] * len(parameters))
        self.execute(f"SELECT * FROM {procname}({placeholders})", list(parameters))
        return parameters

    def _load(self, response: dict[str, Any]) -> None:
        self._reset()
        metadata = response.get("columnMetadata")
        records = response.get("records")
        if metadata is not None or records is not None:
            metadata = metadata or []
            self.description = decode.description(metadata)
            self._rows = decode.rows(
                metadata,
                records or [],
                aware=self.aware_timestamps,
                range_factory=self.range_factory,
                json_text=self.json_text,
            )
            self.rowcount = len(self._rows)
        else:
            self.rowcount = int(response.get("numberOfRecordsUpdated", -1))

    def _reset(self) -> None:
        self.description = None
        self._rows = []
        self._index = 0
        self.rowcount = -1

    # ----- fetching ------------------------------------------------------------

    def fetchone(self) -> tuple | None:
        self._check_result()
        if self._index >= len(self._rows):
            return None
        row = self._rows[self._index]
        self._index += 1
        return row

    def fetchmany(self, size: int | None = None) -> list[tuple]:
        self._check_result()
        size = self.arraysize if size is None else size
        rows = self._rows[self._index : self._index + size]
        self._index += len(rows)
        return rows

    def fetchall(self) -> list[tuple]:
        self._check_result()
        rows = self._rows[self._index :]
        self._index = len(self._rows)
        return rows

    def __iter__(self) -> Iterator[tuple]:
        while (row := self.fetchone()) is not None:
            yield row

    def scroll(self, value: int, mode: str = "relative") -> None:
        self._check_result()
        target = value if mode == "absolute" else self._index + value
        if not 0 <= target <= len(self._rows):
            raise IndexError("scroll out of the result")
        self._index = target

    # ----- the rest of the DB-API ----------------------------------------------

    def setinputsizes(self, sizes: Any) -> None:
        pass

    def setoutputsize(self, size: Any, column: Any = None) -> None:
        pass

    def close(self) -> None:
        self.closed = True
        self._rows = []

    def __enter__(self) -> Cursor:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _check_open(self) -> None:
        if self.closed:
            raise errors.InterfaceError("cursor already closed")
        self.connection._check_open()

    def _check_result(self) -> None:
        self._check_open()
        if self.description is None:
            raise errors.ProgrammingError("the last operation did not produce a result")


def _text(operation: Any) -> str:
    if isinstance(operation, bytes):
        return operation.decode()
    if not isinstance(operation, str):
        # psycopg's sql.Composed and friends: their text needs a connection
        # (quoting); Django only passes them to psycopg-specific code.
        raise errors.NotSupportedError(
            f"the Data API engine takes SQL as text, not {type(operation).__name__}"
        )
    return operation


def _one_statement(sql: str) -> None:
    if ";" in sql and statement_count(sql) > 1:
        raise errors.NotSupportedError(
            "The RDS Data API runs one SQL statement per call, and this text holds "
            "several: run them one by one (cursor.execute() each), in a transaction "
            "(transaction.atomic()) if they must apply together."
        )
