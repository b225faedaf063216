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
    whole (``orca_db.retry_atomic`` does that)."""


class OutcomeUnknown(ScaleEventError):
    """The connection was lost while a write or a COMMIT was in flight and
    nothing proves whether the server applied it. It was not retried, so it
    was not applied twice; the caller must find out (or accept) what happened."""


class RetriesExhausted(ScaleEventError):
    """Every retry allowed by the deadline and the attempt budget failed. The
    last driver error is the ``__cause__``."""
