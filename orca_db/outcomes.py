"""What the retry core concludes, as errors that know no framework.

The core decides the outcome of an operation that met a scale event: the
transaction was rolled back, the outcome of a write is unknown, the retries
are exhausted, the session's state is lost, a deadline cut a statement off.
Each host raises it as the errors its users already catch: the Django host
as ``django.db.OperationalError`` subclasses (``orca_db.exceptions``), the
SQLAlchemy host as ``sqlalchemy.exc`` errors whose ``.orig`` is one of
these (``orca_db.sqlalchemy.exc``).

The classes here are the common bases: a host's class of the same name
subclasses the base and its framework's error, so that ``except
orca_db.outcomes.OutcomeUnknown`` catches what any host raises.

The core raises through the host's :class:`ErrorTable`, which reaches it
with the settings (``RetrySettings.errors``, a class attribute: a host's
settings class carries its table). Two hosts in one process each bring
their own; nothing is registered globally, and nothing is read on the path
of a statement that succeeds.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar, cast

__all__ = [
    "CORE_ERRORS",
    "ConfigurationError",
    "ConnectTimeout",
    "DeadlineExceeded",
    "ErrorTable",
    "OutcomeUnknown",
    "RetriesExhausted",
    "ScaleEventError",
    "SessionStateLost",
    "TransactionRolledBack",
    "WriteDeadlineExceeded",
]


class ScaleEventError(Exception):
    """The database went away (scale event, pause, restart) and the operation
    could not be completed transparently."""


class TransactionRolledBack(ScaleEventError):
    """The connection was lost inside a transaction: the server rolled the
    whole transaction back. Nothing of it was committed; run it again as a
    whole."""


class OutcomeUnknown(ScaleEventError):
    """The connection was lost while a write or a COMMIT was in flight and
    nothing proves whether the server applied it. It was not retried, so it
    was not applied twice; the caller must find out (or accept) what happened."""


class RetriesExhausted(ScaleEventError):
    """Every retry allowed by the deadline and the attempt budget failed. The
    last driver error is the ``__cause__``."""


class SessionStateLost(ScaleEventError):
    """The connection was replaced after a scale event, and the session held
    state that cannot be brought back on a new one. ``lost`` names what was
    lost."""

    def __init__(self, message: str, lost: tuple[str, ...] = ()):
        super().__init__(message)
        self.lost = lost


class DeadlineExceeded(ScaleEventError):
    """A statement was still running when its deadline came: it was cut off
    and its connection closed."""


class WriteDeadlineExceeded(DeadlineExceeded, OutcomeUnknown):
    """A write (or a COMMIT) was cut off at its deadline: it may or may not
    have been applied."""


class ConnectTimeout(Exception):
    """A connect attempt bounded by the caller ran out of time. Classified
    like libpq's own "timeout expired" (``orca_db.classify``): retryable,
    nothing was applied; the retry engine ends it as ``RetriesExhausted``."""

    def __init__(self, detail: str = "the attempt was bounded by the operation's deadline") -> None:
        super().__init__(f"timeout expired ({detail})")


class ConfigurationError(ValueError):
    """A setting of orca-db is invalid or cannot be acted on; the message
    names the key. The Django host raises it as ``ImproperlyConfigured``."""


E = TypeVar("E", bound=BaseException)


class ErrorTable:
    """The classes one host raises the core's errors as.

    ``of(base)`` is the host's subclass of ``base`` (one of the classes
    above, or another error of the core such as
    ``orca_db.aws.errors.CredentialsRejected``), or ``base`` itself when the
    host has none. ``database`` is what a failed query on the host's own
    connection object raises (Django's ``DatabaseError``): the errors the
    core may catch there, and only those."""

    __slots__ = ("_classes", "database")

    def __init__(
        self,
        classes: Mapping[type[BaseException], type[BaseException]] | None = None,
        *,
        database: tuple[type[BaseException], ...] = (Exception,),
    ) -> None:
        for base, cls in (classes or {}).items():
            if not issubclass(cls, base):
                raise TypeError(f"{cls.__qualname__} does not subclass {base.__qualname__}")
        self._classes = dict(classes or {})
        self.database = database

    def of(self, base: type[E]) -> type[E]:
        return cast("type[E]", self._classes.get(base, base))

    def __repr__(self) -> str:
        names = ", ".join(cls.__module__ + "." + cls.__qualname__ for cls in self._classes.values())
        return f"<ErrorTable {names or 'of the core'}>"


#: The core's own classes: what a host with no table of its own gets.
CORE_ERRORS = ErrorTable()
