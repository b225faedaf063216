"""The transaction wrapper the services run in: ``orca_db.retry_atomic``.

Kept behind this one function so the services name it once. Until
``orca_db.transaction`` is installed (it is built in parallel), a stand-in
re-runs a transaction that a scale event rolled back; it cannot resolve a
COMMIT lost in flight, which then reaches the caller as ``OutcomeUnknown``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

from django.db import connections, transaction

from orca_db.conf import retry_settings
from orca_db.exceptions import TransactionRolledBack

T = TypeVar("T")


def in_transaction(func: Callable[[], T], *, using: str | None) -> T:
    """Run ``func`` as one transaction on ``using``; after a scale event rolls
    it back it runs again as a whole."""
    try:
        from orca_db.transaction import retry_atomic
    except ImportError:
        return _rerun_rolled_back(func, using)
    runner: Any = retry_atomic(using=using)(func)
    return runner()


def _rerun_rolled_back(func: Callable[[], T], using: str | None) -> T:
    connection = connections[using or "default"]
    if connection.in_atomic_block:
        # Nested: only the outermost block can be run again.
        with transaction.atomic(using=using):
            return func()
    deadline = time.monotonic() + retry_settings(connection).deadline
    while True:
        try:
            with transaction.atomic(using=using):
                return func()
        except TransactionRolledBack:
            # Nothing of it was committed: running it again is safe.
            if time.monotonic() >= deadline:
                raise
            connection.close()
