"""Whole-transaction retries for SQLAlchemy: :func:`run_transaction`.

What ``orca_db.retry_atomic`` is to Django, for an engine with the
``orca_db`` plugin: a scale event rolls a transaction back as a whole, so
the only correct retry is to run the whole function again, and only when it
is certain that no run committed. Every decision is the core's
(:mod:`orca_db.decisions`, :mod:`orca_db.commit_resolution`, the retry
engine :mod:`orca_db.retry` with its backoff, deadline and one event); this
module only says at which stage of a run a failure came:

- **connect**: nothing of the run was sent: try again;
- **body** (``fn`` runs): a lost connection or a conflict (40001/40P01)
  rolled the transaction back (F1): run ``fn`` again, unless ``fn`` sent
  ``COMMIT`` itself;
- **commit**: the plugin tells a COMMIT that never left (rolled back: run
  again) from one lost in flight; the latter is resolved with
  ``pg_xact_status`` on the id read before COMMIT, on a new connection to
  the same cluster: committed (``fn``'s result is returned, ``fn`` is not
  run again), aborted (run again) or ``OutcomeUnknown``, never a guess.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy import event
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Connection, Engine

from .. import decisions
from .. import outcomes as core
from ..commit_resolution import question_failed
from ..retry import Operation, report, run
from ..sql import profile
from . import exc
from .data_api_runs import operation_alias
from .plugin import settings_of
from .runs import Final, Runs, Stage, chained, watching
from .unfollowed import committed_by_fn

__all__ = ["run_transaction"]

T = TypeVar("T")


def run_transaction(
    target: Any,
    fn: Callable[[Any], T],
    *,
    deadline: float | None = None,
    resolve_commit: bool | None = None,
    retry_conflicts: bool | None = None,
) -> T:
    """Run ``fn`` in one transaction and commit it; when a scale event (or,
    with ``retry_conflicts``, a serialization failure or deadlock) rolls it
    back, run the whole of ``fn`` again on a new connection.

    ``target`` is an :class:`~sqlalchemy.engine.Engine` created with the
    ``orca_db`` plugin or of the Data API dialect
    (``postgresql+aurora_data_api``) (``fn(connection)`` runs inside
    ``connection.begin()``), or a ``sessionmaker`` bound to one
    (``fn(session)`` runs inside ``session.begin()``; what it added is
    flushed before COMMIT). Returns what ``fn`` returned.

    - ``deadline``: seconds for all the runs together (default: the
      engine's ``aurora["deadline"]``), capped on Lambda; the attempts and
      the backoff are the engine's ``aurora`` settings.
    - ``resolve_commit``: read the transaction id before COMMIT (one round
      trip) so that a COMMIT lost in flight is resolved with
      ``pg_xact_status``. ``None`` (default): when ``fn`` sent a statement
      that is not a read; ``True``: always; ``False``: never. Unresolved,
      a lost COMMIT raises ``OutcomeUnknown``.
    - ``retry_conflicts``: run ``fn`` again after 40001/40P01 (default: the
      engine's ``aurora["retry_conflicts"]``, on).

    Raises ``RetriesExhausted`` when attempts or time ran out with nothing
    committed, ``OutcomeUnknown`` when a COMMIT may have been applied and
    nothing could tell; any other error of ``fn`` surfaces unchanged, its
    transaction rolled back. ``fn`` may run more than once: it must have no
    side effects outside the transaction unless they are idempotent.
    """
    if deadline is not None and not deadline >= 0:
        raise ValueError(f"run_transaction() deadline must be at least 0, got {deadline!r}.")
    if inspect.iscoroutinefunction(fn) or inspect.isgeneratorfunction(fn):
        raise TypeError(
            f"run_transaction() cannot run {fn!r}: its body would run after the transaction "
            f"ends. Pass a plain function."
        )
    engine, factory = _engine_of(target)
    settings = settings_of(engine)
    if settings is None:
        raise sa_exc.ArgumentError(
            "run_transaction() needs an engine created with the orca_db plugin: "
            "create_engine(url, plugins=['orca_db'], aurora={...}), or one of the Data API "
            "dialect (postgresql+aurora_data_api) (docs/sqlalchemy.md)."
        )
    if not settings.enabled:
        return _once(engine, factory, fn)
    if deadline is not None:
        settings = dataclasses.replace(settings, deadline=deadline)
    if retry_conflicts is not None:
        settings = dataclasses.replace(settings, retry_conflicts=retry_conflicts)
    _watch(engine)
    # The name the plugin's hooks give this engine's operations: a connect
    # inside this operation is then one attempt, retried by this one.
    alias = operation_alias(engine)
    operation = Operation(alias, "transaction", settings)
    runs = Runs(engine, factory, operation, fn, resolve_commit)
    try:
        result = run(operation, runs.attempt, runs.judge)
    except Final as final:
        failed: BaseException = final.error
    except Exception as error:
        failed = error
    else:
        if operation.attempts == 1 and operation.last_failure is not None:
            # Resolved within the first run (a lost COMMIT found committed):
            # the engine only reports what it retried.
            report(operation, "recovered")
        _committed_inside(alias)
        return result
    settled = _settled(failed, runs, alias)
    if isinstance(settled, exc.OutcomeUnknown) or committed_by_fn(runs):
        _committed_inside(alias)
    raise settled


def _committed_inside(alias: str) -> None:
    """This call committed (or may have) inside the fn of another: that one
    must not run again (its rollback does not undo this commit)."""
    outer = watching.get()
    if outer is not None and outer.stage is Stage.BODY:
        outer.committed_inside = outer.committed_inside or alias


def _settled(error: BaseException, runs: Runs, alias: str) -> BaseException:
    """The error the caller gets: the core's ones as SQLAlchemy's."""
    pending = runs.pending
    if pending is not None:
        if isinstance(error, core.RetriesExhausted):
            error = chained(
                core.OutcomeUnknown(
                    f"The COMMIT on database {alias!r} was lost in flight and the deadline "
                    f"ran out before the server could say whether it committed."
                ),
                error,
            )
        elif not isinstance(error, (core.OutcomeUnknown, exc.OutcomeUnknown)):
            # Asking failed for good: the error must say that COMMIT was in flight.
            error = chained(question_failed(alias, pending, error), error)
    if isinstance(error, core.ScaleEventError):
        ours = exc.wrap(error, None)
        ours.__cause__ = error.__cause__
        error = ours
    committed = committed_by_fn(runs)
    if committed and isinstance(error, sa_exc.OperationalError):
        # A decorator that re-runs the caller on any OperationalError (ORCA's
        # retry_operational_error) would commit that part a second time.
        return chained(
            exc.wrap(
                core.OutcomeUnknown(
                    f"The function run by run_transaction on database {alias!r} failed "
                    f"({type(error).__name__}) after {committed}: part of its work is "
                    f"committed, and it was not run again."
                ),
                None,
            ),
            error,
        )
    return error


def _engine_of(target: Any) -> tuple[Engine, Callable[[], Any] | None]:
    if isinstance(target, Engine):
        return target, None
    kw = getattr(target, "kw", {}) if callable(target) else {}
    if kw.get("binds"):
        # Rows of those mappers go to other connections, committed apart.
        raise TypeError(
            "run_transaction() takes a sessionmaker bound to one engine; this one has "
            "binds= to others, whose writes it could not follow."
        )
    bind = kw.get("bind")
    if isinstance(bind, Engine):
        return bind, target
    raise TypeError(
        f"run_transaction() takes an Engine or a sessionmaker bound to one engine, "
        f"not {type(target).__name__}."
    )


def _once(engine: Engine, factory: Callable[[], Any] | None, fn: Callable[[Any], T]) -> T:
    """``aurora={"enabled": False}``: one run, as SQLAlchemy runs it."""
    if factory is None:
        with engine.begin() as connection:
            return fn(connection)
    with factory() as session, session.begin():
        return fn(session)


# ----- what fn sends ---------------------------------------------------------------


def _watch(engine: Engine) -> None:
    """Listen once per engine to what the runs send on their connection."""
    if not event.contains(engine, "before_cursor_execute", _seen_statement):
        event.listen(engine, "before_cursor_execute", _seen_statement)
        event.listen(engine, "commit", _seen_commit)
        # Pool events outlive dispose(): the new pool takes them over.
        event.listen(engine.pool, "invalidate", _seen_invalidated)
        event.listen(engine.pool, "soft_invalidate", _seen_invalidated)


def _seen_statement(
    connection: Connection, cursor: Any, statement: str, parameters: Any, context: Any, many: bool
) -> None:
    runs = watching.get()
    if runs is None:
        return
    if connection is not runs.connection:
        _seen_elsewhere(runs, connection, statement)
        return
    # Reads need no resolution; anything unrecognised counts as a write.
    if not runs.wrote and not profile(statement).maybe_read:
        runs.wrote = True
    # COMMIT sent as SQL: what came before is committed, whatever follows.
    if not runs.committed_along and decisions.may_commit(statement):
        runs.committed_along = True


def _seen_elsewhere(runs: Runs, connection: Connection, statement: str) -> None:
    """A statement of fn on another connection of the engine (its own
    engine.begin(), a Session of its own): a write there commits apart
    from this run, and a second run would apply it again."""
    if runs.stage is not Stage.BODY or profile(statement).maybe_read:
        return
    driver = connection.connection.dbapi_connection
    if getattr(driver, "autocommit", False) or decisions.may_commit(statement):
        runs.committed_elsewhere = True  # committed as it ran
    elif not any(c is connection for c in runs.wrote_elsewhere):
        runs.wrote_elsewhere.append(connection)


def _seen_commit(connection: Connection) -> None:
    runs = watching.get()
    if runs is None or runs.stage is not Stage.BODY:
        return
    if connection is runs.connection:
        runs.committed_along = True  # fn committed (connection.commit()) itself
    elif any(c is connection for c in runs.wrote_elsewhere):
        runs.committed_elsewhere = True


def _seen_invalidated(dbapi_connection: Any, record: Any, error: BaseException | None) -> None:
    runs = watching.get()
    if (
        runs is not None
        and runs.stage is Stage.BODY
        and runs.lost_in_body is None
        and dbapi_connection is runs.driver_connection
    ):
        runs.lost_in_body = error or ConnectionError("connection invalidated")
