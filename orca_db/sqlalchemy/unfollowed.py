"""What ``fn`` did inside :func:`orca_db.sqlalchemy.run_transaction` that
a rollback does not undo, or that the call cannot commit: the refusals."""

from __future__ import annotations

import contextlib
import inspect
from typing import Any

from .. import outcomes as core
from . import exc

__all__ = ["committed_by_fn", "lost_under_fn", "not_run_again", "refuse_lazy"]


def committed_by_fn(runs: Any) -> str | None:
    """What fn committed of its own in the current run, in words (``None``:
    nothing), from the flags the engine listeners set on ``runs``."""
    if runs.committed_along:
        return "fn sent COMMIT itself, which committed what it had done before"
    if runs.committed_inside is not None:
        return f"a run_transaction on database {runs.committed_inside!r} inside it committed"
    if runs.committed_elsewhere:
        return "fn committed a write on another connection of the engine"
    return None


def not_run_again(runs: Any, error_type: str) -> BaseException | None:
    """The error to raise instead of a second run (not an OperationalError:
    a decorator re-running the caller would commit that part again)."""
    words = committed_by_fn(runs)
    if words is None:
        return None
    return core.OutcomeUnknown(
        f"The transaction on database {runs.operation.alias!r} was rolled back "
        f"({error_type}) and not run again: {words}, which this rollback does not undo."
    )


def refuse_lazy(result: Any, fn: Any) -> None:
    """A coroutine or generator returned by fn would run its body after the
    transaction ends (on a connection handed back): closed, refused."""
    lazy = inspect.isawaitable(result) or inspect.isgenerator(result)
    if not (lazy or inspect.isasyncgen(result)):
        return
    close = getattr(result, "close", None) or getattr(result, "aclose", None)
    with contextlib.suppress(Exception):
        closing = close() if close is not None else None
        if inspect.iscoroutine(closing):
            closing.close()
    raise TypeError(
        f"run_transaction() got {type(result).__name__} from {fn!r}: its body would run "
        f"after the transaction ends. Return the result itself."
    )


def lost_under_fn(alias: str, lost: BaseException) -> BaseException:
    """fn caught the error of its lost connection and returned: the server
    rolled back what came before, and committing the rest would commit
    part of fn's transaction. Nothing committed: run again."""
    rolled_back = core.TransactionRolledBack(
        f"The connection to database {alias!r} was lost inside the transaction and fn "
        f"caught the error and went on: the server rolled the transaction back."
    )
    rolled_back.__cause__ = lost  # the retry engine judges the driver error
    error = exc.wrap(rolled_back, None)
    error.__cause__ = lost
    return error
