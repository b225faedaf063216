"""Every decision to replay, re-run or refuse, and why it is safe.

The backend glue (``orca_db.backends``) and ``retry_atomic`` only ask these
functions; what an error proves comes from :mod:`orca_db.classify`, what a
statement does from :mod:`orca_db.sql`.

The facts the proofs rest on (PostgreSQL's, and what Aurora must keep true
for them, see docs/retry-safety.md):

1. A session that ends rolls back its open transaction. A transaction that
   lost its connection therefore committed nothing, unless its COMMIT was
   in flight (then only ``pg_xact_status`` can tell).
2. An autocommit statement commits by itself when it completes. If its reply
   is lost, it may have committed: only a statement that changes nothing
   (a replayable read) may run again, or one the server provably never ran
   (it ended the session at an interrupt check, SQLSTATE 57P01/57P03, or the
   connection was closed before anything was sent). The interrupt-check
   proof covers one transaction only: a statement that commits on its own
   along the way (``CALL`` of a procedure, ``DO``, ``VACUUM``, the
   ``CONCURRENTLY`` forms) may have committed part of its work before it
   was ended, and is judged like any other write.
3. Nothing of a transaction may run on a new connection: the new session
   holds none of it. So inside any transaction (an atomic block,
   ``set_autocommit(False)``, ``BEGIN`` sent as SQL, the driver's own
   ``transaction()``), whatever the statement, the answer is
   ``TransactionRolledBack`` (a COMMIT in flight excepted: fact 1);
   libpq's transaction status, not Django's
   flags alone, says whether one is open. (With ``set_autocommit(False)``
   the statement opens one itself.) Before a statement is sent on a
   connection with no transaction open, a connection the server already
   closed is replaced instead (nothing is lost).
4. A replayed read runs in a ``READ ONLY`` transaction, whatever cursor
   it came from (a server-side cursor too): the text does not show what a
   view, a rule or a function behind it does, and should the classifier
   misjudge a write, the server refuses it instead of running it twice.
"""

from __future__ import annotations

import enum

from .classify import Failure
from .conf import RetrySettings
from .sql import profile

_MAY_COMMIT = frozenset({"commit", "prepare_transaction", "commit_prepared", "mixed"})

# Statements that may commit part of their work before they end (fact 2).
_COMMIT_ALONG_THE_WAY = frozenset({"CALL", "DO", "VACUUM"})
_CONCURRENT_DDL = frozenset({"CREATE", "DROP", "REINDEX", "ALTER"})


def may_commit(sql: object) -> bool:
    """Whether ``sql`` ends a transaction by committing it (COMMIT, END,
    PREPARE TRANSACTION, COMMIT PREPARED, or a text of several statements
    with one of these): a lost reply leaves its outcome unknown."""
    return profile(sql).control in _MAY_COMMIT


def commits_along_the_way(sql: object) -> bool:
    """Whether ``sql`` may commit part of its work before it ends (F2)."""
    if not isinstance(sql, (str, bytes)):
        return True  # a composed statement: nothing known, nothing promised
    first = profile(sql).first
    if first in _COMMIT_ALONG_THE_WAY:
        return True
    text = sql.upper() if isinstance(sql, str) else sql.decode("utf-8", "replace").upper()
    return first in _CONCURRENT_DDL and "CONCURRENTLY" in text


class Verdict(enum.Enum):
    #: Run the statement again on a new connection.
    REPLAY = "replay"
    #: Run it again inside a READ ONLY transaction (fact 4).
    REPLAY_READ_ONLY = "replay read-only"
    #: The transaction it belonged to is gone: TransactionRolledBack.
    ROLLED_BACK = "rolled back"
    #: It may have been applied: OutcomeUnknown, never replayed.
    UNKNOWN = "unknown"


def after_statement_failure(
    failure: Failure,
    sql: object,
    *,
    many: bool,
    in_transaction: bool,
    settings: RetrySettings,
) -> Verdict:
    """A statement lost its connection (``failure`` is retryable)."""
    if may_commit(sql):
        if in_transaction and failure.closed_before_send:
            return Verdict.ROLLED_BACK  # the COMMIT never left: fact 1
        return Verdict.UNKNOWN  # may have committed: fact 1
    if in_transaction:
        return Verdict.ROLLED_BACK  # fact 3, even for a statement never sent
    if failure.closed_before_send:
        return Verdict.REPLAY  # nothing of it reached the server
    if many:
        # executemany runs statement after statement: a proof about the
        # failed one says nothing of those before it.
        return Verdict.REPLAY if settings.retry_writes else Verdict.UNKNOWN
    if failure.not_applied and not commits_along_the_way(sql):
        return Verdict.REPLAY  # fact 2: the server ended it unrun
    from .sql import is_replayable_read  # parses: loaded after a failure only

    if is_replayable_read(sql):
        # Whatever the cursor (a server-side one too): the text cannot show
        # what a view or a function behind it does (fact 4).
        return Verdict.REPLAY_READ_ONLY
    if settings.retry_writes:
        return Verdict.REPLAY  # the application vouched for its writes
    return Verdict.UNKNOWN


def commit_lost(failure: Failure) -> Verdict:
    """A COMMIT (Django's ``commit()``) lost its connection."""
    if failure.closed_before_send:
        return Verdict.ROLLED_BACK  # never sent: fact 1
    return Verdict.UNKNOWN


def rerun_transaction(
    failure: Failure, *, committed_nothing: bool, settings: RetrySettings
) -> bool:
    """May ``retry_atomic`` run its whole function again?

    ``committed_nothing`` is the caller's proof that no run committed: the
    failure came before COMMIT was sent on the transaction's own connection
    (fact 1), or a lost COMMIT was resolved as aborted."""
    if not committed_nothing:
        return False
    if failure.conflict:
        # 40001/40P01: the server rolled the transaction back itself.
        return settings.retry_conflicts
    return failure.retryable
