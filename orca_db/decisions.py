"""Every decision to replay, re-run or refuse, and why it is safe.

The backend glue (``orca_db.backends``) and ``retry_atomic`` only ask these
functions; what an error proves comes from :mod:`orca_db.classify`, what a
statement does from :mod:`orca_db.sql`.

The facts the proofs rest on (PostgreSQL's, and what Aurora must keep true
for them). docs/retry-safety.md gives each with its reasons under the same
numbers, F1 to F7; code, tests and docs cite them so.

F1. A session that ends rolls back its open transaction. A transaction that
    lost its connection therefore committed nothing, unless its COMMIT (or
    PREPARE TRANSACTION, COMMIT PREPARED) was in flight: then it may have
    committed, and only F5 can tell. Anything that is not text (a
    ``psycopg.sql.Composed``) may be such a COMMIT.
F2. SQLSTATE 57P01/57P03 means the server ended the statement at an
    interrupt check: the one transaction of the statement's text did not
    commit. Nothing more: a statement that commits along the way may have
    committed part of its work, and is judged like any other write
    (:mod:`orca_db.sql.along`, the rule: only statement kinds PostgreSQL
    runs inside the text's transaction, accepted in a transaction block and
    never committing on their own, are covered; not VACUUM, ANALYZE,
    CLUSTER, REINDEX, CALL, DO, the ``CONCURRENTLY`` forms,
    ``COPY ... PROGRAM``, nor anything unparsable). Nor does it cover
    another server: ``dblink_exec`` commits there at once.
F3. A connection found closed before anything was sent carried nothing:
    the statement is sent once, on a new connection.
F4. An autocommit statement commits by itself when it completes. If its
    reply is lost, it may have committed: only a statement that changes
    nothing (a replayable read) may run again, or one F2 or F3 proves
    unrun.
F5. ``pg_xact_status(xid)`` tells from any session whether a transaction
    committed (``retry_atomic`` resolves a lost COMMIT with it).
F6. A ``READ ONLY`` transaction refuses to write: a replayed read runs in
    one, whatever cursor it came from (a server-side cursor too): the text
    does not show what a view, a rule or a function behind it does, and
    should the classifier misjudge a write, the server refuses it instead
    of running it twice.
F7. A transaction belongs to its session: nothing of it may run on a new
    connection, which holds none of it. So inside any transaction (an
    atomic block, ``set_autocommit(False)``, ``BEGIN`` sent as SQL, the
    driver's own ``transaction()``), whatever the statement, the answer is
    ``TransactionRolledBack`` (a COMMIT in flight excepted: F1), and the
    rest of the transaction is refused. libpq's transaction status, not
    Django's flags alone, says whether one is open. (With
    ``set_autocommit(False)`` the statement opens one itself.)
"""

from __future__ import annotations

import enum

from .classify import Failure
from .options import RetrySettings
from .sql import profile

_MAY_COMMIT = frozenset({"commit", "prepare_transaction", "commit_prepared", "mixed"})


def may_commit(sql: object) -> bool:
    """Whether ``sql`` may end a transaction by committing it (COMMIT, END,
    PREPARE TRANSACTION, COMMIT PREPARED, a text of several statements with
    one of these, or anything that is not text, such as a
    ``psycopg.sql.Composed``: nothing is known of it, so it may be one of
    these): a lost reply leaves its outcome unknown (F1)."""
    if not isinstance(sql, (str, bytes)):
        return True
    return profile(sql).control in _MAY_COMMIT


def shown_to_end_transaction(sql: object) -> bool:
    """Whether the text of ``sql`` shows it ends the transaction it runs in
    (:func:`may_commit`, and text). A composed statement may commit, but
    may as well leave the transaction open: after its connection is lost,
    the rest of that transaction must still be refused (F7)."""
    return isinstance(sql, (str, bytes)) and may_commit(sql)


def commits_along_the_way(sql: object) -> bool:
    """Whether ``sql`` may commit part of what it does outside the one
    transaction of its text: then 57P01/57P03 proves nothing of it (F2)."""
    from .sql import along  # parses: loaded after a failure only

    return along.commits_along_the_way(sql)


class Verdict(enum.Enum):
    #: Run the statement again on a new connection.
    REPLAY = "replay"
    #: Run it again inside a READ ONLY transaction (F6).
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
            return Verdict.ROLLED_BACK  # the COMMIT never left: F1, F3
        return Verdict.UNKNOWN  # may have committed: F1
    if in_transaction:
        return Verdict.ROLLED_BACK  # F7, even for a statement never sent
    if failure.closed_before_send:
        return Verdict.REPLAY  # nothing of it reached the server: F3
    if many:
        # executemany runs statement after statement: a proof about the
        # failed one says nothing of those before it.
        return Verdict.REPLAY if settings.retry_writes else Verdict.UNKNOWN
    if failure.not_applied and not commits_along_the_way(sql):
        return Verdict.REPLAY  # F2: the server ended it unrun
    from .sql import is_replayable_read  # parses: loaded after a failure only

    if is_replayable_read(sql):
        # Whatever the cursor (a server-side one too): the text cannot show
        # what a view or a function behind it does (F6).
        return Verdict.REPLAY_READ_ONLY
    if settings.retry_writes:
        return Verdict.REPLAY  # the application vouched for its writes
    return Verdict.UNKNOWN


def commit_lost(failure: Failure) -> Verdict:
    """A COMMIT (Django's ``commit()``) lost its connection."""
    if failure.closed_before_send:
        return Verdict.ROLLED_BACK  # never sent: F1, F3
    return Verdict.UNKNOWN


def rerun_transaction(
    failure: Failure, *, committed_nothing: bool, settings: RetrySettings
) -> bool:
    """May ``retry_atomic`` run its whole function again?

    ``committed_nothing`` is the caller's proof that no run committed: the
    failure came before COMMIT was sent on the transaction's own connection
    (F1), or a lost COMMIT was resolved as aborted (F5)."""
    if not committed_nothing:
        return False
    if failure.conflict:
        # 40001/40P01: the server rolled the transaction back itself.
        return settings.retry_conflicts
    return failure.retryable
