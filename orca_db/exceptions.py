"""Exceptions raised when a scale event is met and cannot be hidden.

All of them subclass ``django.db.OperationalError`` so that code which already
handles database outages keeps working unchanged.
"""

from django.db import OperationalError


class ScaleEventError(OperationalError):
    """The database went away (scale event, pause, restart) and the operation
    could not be completed transparently."""


class TransactionRolledBack(ScaleEventError):
    """The connection was lost inside a transaction: the server rolled the
    whole transaction back. Nothing of it was committed; run it again as a
    whole (``orca_db.retry_atomic`` does that).

    Outside an atomic block (``set_autocommit(False)``, or ``BEGIN`` sent as
    SQL) the connection refuses every statement after this error, as
    Django's stock backend does, until the application ends the transaction
    with ``rollback()`` (or ``ROLLBACK``) or closes the connection."""


class OutcomeUnknown(ScaleEventError):
    """The connection was lost while a write or a COMMIT was in flight and
    nothing proves whether the server applied it. It was not retried, so it
    was not applied twice; the caller must find out (or accept) what happened."""


class RetriesExhausted(ScaleEventError):
    """Every retry allowed by the deadline and the attempt budget failed. The
    last driver error is the ``__cause__``."""


class SessionStateLost(ScaleEventError):
    """The connection was replaced after a scale event, and the session held
    state that cannot be brought back on a new one (a session advisory lock,
    a temporary table, a prepared statement, LISTEN, a held cursor, or a
    change orca-db could not follow). Running the statement anyway would run
    it in another session context, so it was not run.

    The connection refuses every statement after this error until the
    application closes it (``connection.close()``; Django does so at the end
    of each request). ``lost`` names what was lost."""

    def __init__(self, message: str, lost: tuple[str, ...] = ()):
        super().__init__(message)
        self.lost = lost


class DeadlineExceeded(ScaleEventError):
    """A statement was still running when its deadline came (the Lambda
    function's remaining time, or ``OPTIONS["aurora"]["statement_deadline"]``):
    it was cut off and its connection closed. Inside a transaction the
    transaction is rolled back by the server."""


class WriteDeadlineExceeded(DeadlineExceeded, OutcomeUnknown):
    """A write (or a COMMIT) was cut off at its deadline: it may or may not
    have been applied."""
