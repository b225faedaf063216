"""Rule 2 of docs/retry-safety.md on the SQLAlchemy plugin: a statement, a
COMMIT or a ROLLBACK still waiting for the server at its deadline
(``aurora={"statement_deadline": s}``, or the Lambda cap,
:func:`orca_db.deadlines.deadline_cap`) is cut off by the core's watchdog,
which shuts its socket down; the driver's error then becomes the core's
``DeadlineExceeded`` or ``WriteDeadlineExceeded`` (:mod:`orca_db.cut_off`:
the same rules and words as the Django backend's), which the hook
raises as ours (``orca_db.sqlalchemy.exc``). Nothing is armed while no
deadline applies: one global read per statement.

What is the plugin's own here: a watch per call (no held watch), on the
DB-API connection SQLAlchemy passes."""

from __future__ import annotations

from typing import Any

from .. import deadlines
from ..cut_off import commit as commit_cut_off
from ..cut_off import ended, socket_of
from ..cut_off import rollback as rollback_cut_off
from ..cut_off import statement as statement_cut_off

__all__ = ["commit_cut_off", "ended", "rollback_cut_off", "statement_cut_off", "watch"]


def watch(dbapi_connection: Any, statement_deadline: float | None) -> deadlines.Watch | None:
    """The watch over one blocking call (``None``: no deadline applies);
    the caller releases it with :func:`ended` when the call returns."""
    if not (deadlines.open_caps or statement_deadline):
        return None
    try:
        fd = socket_of(dbapi_connection)
    except Exception:
        return None  # closed already: the call fails at once
    return deadlines.watch_statement(fd, statement_deadline)
