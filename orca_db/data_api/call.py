"""One Data API call: what it is (for a retry layer to judge) and sending it."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from . import errors

if TYPE_CHECKING:
    from .connection import Connection

#: boto3's method for each operation.
_METHODS = {
    "ExecuteStatement": "execute_statement",
    "BatchExecuteStatement": "batch_execute_statement",
    "BeginTransaction": "begin_transaction",
    "CommitTransaction": "commit_transaction",
    "RollbackTransaction": "rollback_transaction",
}


@dataclasses.dataclass
class Call:
    connection: Connection
    #: ``ExecuteStatement``, ``BatchExecuteStatement``, ``BeginTransaction``,
    #: ``CommitTransaction`` or ``RollbackTransaction``.
    operation: str
    #: The request, as boto3 takes it (parameters included: never log it).
    request: dict[str, Any]
    #: The statement as the application wrote it (``%s`` placeholders),
    #: ``None`` for transaction calls.
    statement: Any = None
    #: A batch: several statements, one per parameter set.
    many: bool = False
    #: Part of a transaction (or beginning one).
    in_transaction: bool = False
    #: Seconds since this connection's previous call (a transaction the Data
    #: API saw no call for in 3 minutes is gone).
    idle: float = 0.0

    def send(self) -> dict[str, Any]:
        """Make the call once; the answer, or the DB-API error it comes to."""
        method = getattr(self.connection.client, _METHODS[self.operation])
        try:
            return method(**self.request)
        except Exception as error:
            raise errors.from_exception(error) from error
