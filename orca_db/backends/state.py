"""What the aurora backend keeps about one Django connection, in one typed
object (:class:`ConnectionState`), held by the wrapper as ``orca_state``.

Every field says what it means; the wrapper's mixins (``mixins.py``,
``lost.py``, ``ending.py``), the statement path (``cursor.py``) and the
watches (``watching.py``) read and write it here, and nowhere else keeps
state of the retry layer on the wrapper. The statement path reads the
object once per statement and its fields as slots: one attribute fetch on
the wrapper instead of one per field.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from ..exceptions import SessionStateLost, TransactionRolledBack
from ..session import SessionState

if TYPE_CHECKING:
    from ..deadlines import Watch
    from ..drivers import Link


@dataclasses.dataclass(frozen=True)
class Refusal:
    """Why the connection refuses statements, and until when."""

    #: "transaction": until rollback()/ROLLBACK or close();
    #: "session": until close().
    kind: str
    message: str
    lost: tuple[str, ...] = ()

    def error(self) -> Exception:
        if self.kind == "session":
            return SessionStateLost(self.message, self.lost)
        return TransactionRolledBack(self.message)


@dataclasses.dataclass(slots=True, eq=False)
class ConnectionState:
    """The retry layer's state of one Django connection (a wrapper), kept
    across the driver connections that replace a lost one."""

    #: The current driver connection with its cheap questions; ``None``
    #: while retries are off, the connection refuses work, or none is open
    #: (the statement path then takes the slow way, which says why).
    link: Link | None = None
    #: Set while the connection refuses statements (lost.py).
    refusal: Refusal | None = None
    #: The application's session changes, to restore on a new connection.
    session: SessionState = dataclasses.field(default_factory=SessionState)
    #: The autocommit the application had when its connection was lost, to
    #: set again on the next one (``None``: the connection's default).
    autocommit_wish: bool | None = None
    #: ``statement_deadline`` of the settings (seconds; ``None``: none).
    statement_deadline: float | None = None
    #: Retries on (``enabled`` of the settings), as of the last connect.
    enabled: bool = True
    #: The retrying cursor wrapper class, made on first use.
    cursor_class: type | None = None
    #: A close() now is orca-db's own (while it connects, or drops a
    #: connection lost inside an atomic block), not the application's: the
    #: session is kept, to restore on the next connection.
    close_keeps_session: bool = False
    #: A ROLLBACK cut off at its deadline dropped the connection: the
    #: close() that atomic() makes next is part of that loss.
    rollback_cut: bool = False
    #: Under a deadline cap: the watch holding the socket until the cap,
    #: and every held watch not disarmed yet (watching.py).
    held_watch: Watch | None = None
    held_watches: tuple[Watch, ...] = ()
    #: The watch over Django's set-up and the session's restore on a new
    #: connection, until the connect ends.
    setup_watch: Watch | None = None
