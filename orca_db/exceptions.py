"""Exceptions raised when a scale event is met and cannot be hidden: the
Django host's errors.

All of them subclass ``django.db.OperationalError`` so that code which already
handles database outages keeps working unchanged, and the core's class of
the same name (``orca_db.outcomes``), which the retry core decides on and
raises through :data:`DJANGO_ERRORS` (the table ``orca_db.conf``'s
``RetrySettings`` carries).

A Django host module (docs/architecture.md): its path is the one users
import these errors from.
"""

from django.core.exceptions import ImproperlyConfigured
from django.db import DatabaseError, OperationalError

from . import outcomes
from .aws import errors as aws_errors


class ScaleEventError(outcomes.ScaleEventError, OperationalError):
    """The database went away (scale event, pause, restart) and the operation
    could not be completed transparently."""


class TransactionRolledBack(ScaleEventError, outcomes.TransactionRolledBack):
    """The connection was lost inside a transaction: the server rolled the
    whole transaction back. Nothing of it was committed; run it again as a
    whole (``orca_db.retry_atomic`` does that).

    Outside an atomic block (``set_autocommit(False)``, or ``BEGIN`` sent as
    SQL) the connection refuses every statement after this error, as
    Django's stock backend does, until the application ends the transaction
    with ``rollback()`` (or ``ROLLBACK``) or closes the connection."""


class OutcomeUnknown(ScaleEventError, outcomes.OutcomeUnknown):
    """The connection was lost while a write or a COMMIT was in flight and
    nothing proves whether the server applied it. It was not retried, so it
    was not applied twice; the caller must find out (or accept) what happened."""


class RetriesExhausted(ScaleEventError, outcomes.RetriesExhausted):
    """Every retry allowed by the deadline and the attempt budget failed. The
    last driver error is the ``__cause__``."""


class SessionStateLost(ScaleEventError, outcomes.SessionStateLost):
    """The connection was replaced after a scale event, and the session held
    state that cannot be brought back on a new one (a session advisory lock,
    a temporary table, a prepared statement, LISTEN, a held cursor, or a
    change orca-db could not follow). Running the statement anyway would run
    it in another session context, so it was not run.

    The connection refuses every statement after this error until the
    application closes it (``connection.close()``; Django does so at the end
    of each request). ``lost`` names what was lost."""


class DeadlineExceeded(ScaleEventError, outcomes.DeadlineExceeded):
    """A statement was still running when its deadline came (the Lambda
    function's remaining time, or ``OPTIONS["aurora"]["statement_deadline"]``):
    it was cut off and its connection closed. Inside a transaction the
    transaction is rolled back by the server."""


class WriteDeadlineExceeded(DeadlineExceeded, OutcomeUnknown, outcomes.WriteDeadlineExceeded):
    """A write (or a COMMIT) was cut off at its deadline: it may or may not
    have been applied."""


class SettingsError(outcomes.ConfigurationError, ImproperlyConfigured):
    """A bad ``OPTIONS["aurora"]`` value (or an AWS setting that cannot be
    acted on), as Django reports configuration errors."""


class CredentialsRejected(aws_errors.CredentialsRejected, OperationalError):
    __doc__ = aws_errors.CredentialsRejected.__doc__


class TokenUnavailable(aws_errors.TokenUnavailable, OperationalError):
    __doc__ = aws_errors.TokenUnavailable.__doc__


class SecretUnavailable(aws_errors.SecretUnavailable, OperationalError):
    __doc__ = aws_errors.SecretUnavailable.__doc__


#: The Django host's table: the core raises each of its errors as the class
#: here that subclasses it; a failed query on Django's connection raises
#: ``DatabaseError``.
DJANGO_ERRORS = outcomes.ErrorTable(
    {
        outcomes.ScaleEventError: ScaleEventError,
        outcomes.TransactionRolledBack: TransactionRolledBack,
        outcomes.OutcomeUnknown: OutcomeUnknown,
        outcomes.RetriesExhausted: RetriesExhausted,
        outcomes.SessionStateLost: SessionStateLost,
        outcomes.DeadlineExceeded: DeadlineExceeded,
        outcomes.WriteDeadlineExceeded: WriteDeadlineExceeded,
        outcomes.ConfigurationError: SettingsError,
        aws_errors.CredentialsRejected: CredentialsRejected,
        aws_errors.TokenUnavailable: TokenUnavailable,
        aws_errors.SecretUnavailable: SecretUnavailable,
    },
    database=(DatabaseError,),
)
