"""The SQLAlchemy engine plugin: ``create_engine(url, plugins=["orca_db"])``.

Registered under the ``sqlalchemy.plugins`` entry point as ``orca_db``, so
``?plugin=orca_db`` in the URL works too. It takes ``aurora={...}``, the keys
of Django's ``OPTIONS["aurora"]``, validated by the same parser
(:func:`orca_db.options.parse_retry_settings`).

What it installs on the engine, all through SQLAlchemy's public hooks:

- the dialect's ``connect()``: every connect is retried through pauses,
  scale points and resume storms within ``deadline``, after the
  application's own ``do_connect`` listeners have run (one ``orca_db.retry`` operation, the
  same JSON events as the Django host), each attempt bounded by what is
  left of it;
- the pool: a pooled connection the server has already closed (a scale
  event while it sat in the pool) is replaced before it is handed out:
  nothing was sent on it, nothing is lost (``orca_db.sqlalchemy.pooling``);
- ``do_execute`` / ``do_execute_no_params`` / ``do_executemany`` and the
  dialect's ``do_commit``: a lost connection is judged by the core
  (:func:`orca_db.decisions.after_statement_failure`, ``commit_lost``) on
  the driver's own transaction status; an autocommit read is replayed in a
  ``READ ONLY`` transaction, anything else becomes ``TransactionRolledBack``
  or ``OutcomeUnknown`` (raised by the hook, the connection invalidated
  first: ``ending.lose``), never a silent replay.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import event
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import CreateEnginePlugin, Engine
from sqlalchemy.engine.url import URL

from ..options import RetrySettings
from . import pooling, sessions
from .ending import leave_rollbacks_unwatched
from .hooks import Host

#: The drivers the plugin knows how to read (transaction status, socket).
SUPPORTED_DRIVERS = ("psycopg2", "psycopg")
#: Keys Django's OPTIONS["aurora"] accepts that this host does not honour:
#: refused, never silently ignored (the Data API engine's own key).
NOT_YET = ("cluster_arn",)
_SETTINGS = "orca_db_settings"
ASYNC_REFUSED = (
    "The orca_db plugin does not support asyncio engines yet ({!r} with "
    "create_async_engine): its waits (backoff sleeps, bounded connects, session "
    "restores) block the calling thread, which would stall the event loop. Use a "
    "synchronous engine (e.g. through run_in_executor / AsyncSession.run_sync), "
    'or an engine without the plugin (docs/sqlalchemy.md, "asyncio").'
)


def parse_settings(value: Any) -> RetrySettings:
    """``aurora={...}`` checked as Django's ``OPTIONS["aurora"]`` is, with
    the same messages (naming ``aurora`` instead of ``OPTIONS['aurora']``);
    raised as ``sqlalchemy.exc.ArgumentError``, what SQLAlchemy raises for a
    bad ``create_engine`` argument."""
    from ..options import parse_retry_settings
    from ..outcomes import ConfigurationError

    try:
        settings = parse_retry_settings(value)
    except ConfigurationError as error:
        message = str(error).replace("OPTIONS['aurora']", "aurora")
        raise sa_exc.ArgumentError(message) from error
    given = sorted(key for key in NOT_YET if (value or {}).get(key) is not None)
    if given:
        raise sa_exc.ArgumentError(
            f"aurora[{given[0]!r}] is not supported by the SQLAlchemy plugin yet "
            f"(docs/sqlalchemy.md); remove it, or use the Django backend."
        )
    return settings


class OrcaPlugin(CreateEnginePlugin):
    """``create_engine(url, plugins=["orca_db"], aurora={...})``."""

    def __init__(self, url: URL, kwargs: dict[str, Any]):
        super().__init__(url, kwargs)
        self.settings = parse_settings(kwargs.pop("aurora", None))
        if kwargs.get("_is_async"):  # create_async_engine()
            raise sa_exc.ArgumentError(ASYNC_REFUSED.format(url.drivername))
        driver = url.get_driver_name()
        if url.get_backend_name() != "postgresql" or driver not in SUPPORTED_DRIVERS:
            raise sa_exc.ArgumentError(
                f"The orca_db plugin works with postgresql+psycopg2 and postgresql+psycopg "
                f"(synchronous engines), not {url.drivername!r} (docs/sqlalchemy.md)."
            )
        if self.settings.enabled:
            pooling.choose_pool_class(kwargs)

    def update_url(self, url: URL) -> URL:
        return url

    def engine_created(self, engine: Engine) -> None:
        if engine.dialect.is_async:
            raise sa_exc.ArgumentError(ASYNC_REFUSED.format(engine.url.drivername))
        install(engine, self.settings)


def settings_of(engine: Engine) -> RetrySettings | None:
    """The retry settings the plugin installed on ``engine``, or the Data
    API dialect's own (``postgresql+aurora_data_api``), or ``None``."""
    settings = engine.dialect.__dict__.get(_SETTINGS)
    if settings is None:
        settings = getattr(engine.dialect, "retry_settings", None)
    return settings


def install(engine: Engine, settings: RetrySettings) -> None:
    dialect = engine.dialect
    dialect.__dict__[_SETTINGS] = settings
    if not settings.enabled:
        return
    host = Host(engine, settings)
    if not pooling.checks_itself(engine.pool):
        event.listen(engine.pool, "checkout", pooling.checkout_listener)
    # Rule 1: a changed session is cleaned (or closed) for the next borrower,
    # arranged on its pool entry when the session first changes.
    clean_up = sessions.checkin_for(engine, settings.statement_deadline)
    if sessions.finalizers_supported():
        dialect.__dict__[sessions.CLEAN_UP] = clean_up
    else:
        event.listen(engine.pool, "checkin", clean_up)
    # The engine's own dialect instance gets the statement hooks, and a
    # do_commit that judges a lost COMMIT (no event reports one); each calls
    # the dialect's method (its class's). ROLLBACK is bounded by the
    # deadlines and ends the session's pending changes (the pool's
    # reset-on-return calls it too).
    dialect.connect = host.connect  # type: ignore[method-assign]
    dialect.do_execute = host.do_execute  # type: ignore[method-assign]
    dialect.do_execute_no_params = host.do_execute_no_params  # type: ignore[method-assign]
    dialect.do_executemany = host.do_executemany  # type: ignore[method-assign]
    dialect.do_commit = host.do_commit  # type: ignore[method-assign]
    if host.plain:
        # The dialect's own ROLLBACK until a statement deadline, a session
        # followed or a cap (a Lambda invocation's) gives it something to do.
        leave_rollbacks_unwatched(host)
    else:
        host.watch_rollbacks()
