"""The statement hooks' slow paths (``orca_db.sqlalchemy.hooks``): an
autocommit statement replayed on a new connection after a lost one, or sent
on a new one when its connection was found closed before sending."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

from sqlalchemy import exc as sa_exc

from .. import decisions
from ..classify import SERVER_CLOSED, Failure
from ..options import RetrySettings
from . import exc, sessions, watching
from .exc import as_sqlalchemy, core_error
from .reconnect import reconnect, run_read_only

#: Which driver call a statement hook makes.
EXECUTE, NO_PARAMS, MANY = 0, 1, 2


class ReplayHooks:
    """Mixed into ``orca_db.sqlalchemy.hooks.Host``."""

    alias: str
    settings: RetrySettings
    statement_deadline: float | None
    execute: Callable[..., None]
    execute_no_params: Callable[..., None]
    executemany: Callable[..., None]

    def _runner(self, kind: int, statement: str, parameters: Any, context: Any) -> Callable:
        """The statement's driver call on another cursor (a replay)."""
        if kind == EXECUTE:
            return lambda cur: self.execute(cur, statement, parameters, context)
        if kind == NO_PARAMS:
            return lambda cur: self.execute_no_params(cur, statement, context)
        return lambda cur: self.executemany(cur, statement, parameters, context)

    def _replay(
        self,
        first_error: BaseException,
        cursor: Any,
        statement: str,
        context: Any,
        run: Callable[[Any], Any],
        verdict: decisions.Verdict,
    ) -> None:
        """Run an autocommit statement again on a new connection (the
        recipe of SQLAlchemy's FAQ, under the core's judge and deadline)."""
        from ..retry import Operation, recover

        operation = Operation(self.alias, "execute", self.settings, statement=statement)
        stage = "execute"

        def judge(error: BaseException, failure: Failure) -> BaseException | None:
            if stage == "connect":
                return None  # nothing was sent on this attempt
            again = decisions.after_statement_failure(
                failure, statement, many=False, in_transaction=False, settings=self.settings
            )
            if again in (decisions.Verdict.REPLAY, decisions.Verdict.REPLAY_READ_ONLY):
                return None
            return core_error("OutcomeUnknown", self.alias, failure)

        def attempt() -> None:
            nonlocal stage
            stage = "connect"
            try:
                new_cursor = reconnect(context)
            except sa_exc.DBAPIError as error:
                if error.orig is not None and not isinstance(error, exc.ScaleEventError):
                    raise error.orig from None
                raise
            tracked = context.root_connection.__dict__.get(sessions.KEY)
            if tracked is not None:
                sessions.resume(context.root_connection, tracked, new_cursor.connection, self.alias)
            stage = "execute"
            watch = watching.watch(new_cursor.connection, self.statement_deadline)
            try:
                if verdict is decisions.Verdict.REPLAY_READ_ONLY:
                    run_read_only(new_cursor.connection, new_cursor, run, self.alias)
                else:
                    run(new_cursor)
            except Exception as error:
                if watching.ended(watch):
                    raise watching.statement_cut_off(self.alias, statement, False) from error
                raise
            watching.ended(watch)

        with contextlib.suppress(Exception):
            cursor.close()
        with as_sqlalchemy(statement):
            recover(operation, first_error, attempt, judge)

    def _reconnect_before_send(self, statement: str, context: Any) -> Any:
        from ..retry import Operation, report

        operation = Operation(self.alias, "execute", self.settings, statement=statement)
        operation.last_failure = SERVER_CLOSED
        try:
            cursor = reconnect(context)
            root = context.root_connection
            tracked = root.__dict__.get(sessions.KEY)
            if tracked is not None:
                with as_sqlalchemy(statement):
                    sessions.resume(root, tracked, cursor.connection, self.alias)
            return cursor
        except BaseException:
            report(operation, "raised")
            raise
