"""What the application changed in its database session, so that a new
connection after a scale event either gets the same session back or is
refused.

A scale event ends the server session with everything it held. A framework
restores what it sets up itself on every connect, not what the application
set at runtime. Running the next
statement on a new session without it would run it in another context
silently: ``SET search_path TO tenant42`` lost means a write into
``public``; ``SET ROLE`` lost changes what row-level security lets through;
a session advisory lock lost means a write without the lock it relied on.

So a host shows this tracker every statement whose text may change session
state (``orca_db.sql.profile(sql).session``, a dict lookup) and every
transaction boundary while changes wait on one. On a new connection:

- restorable changes (``SET``/``RESET`` of any parameter, ``SET ROLE``,
  ``SET SESSION AUTHORIZATION``, a bare ``SELECT set_config(..., false)``)
  are applied again, in order, with their original parameters;
- anything else held (session advisory locks, temporary tables, prepared
  statements, ``LISTEN``, cursors ``WITH HOLD``, ``LOAD``, or a change that
  could not be followed) makes the backend refuse with ``SessionStateLost``.

Changes made inside a transaction count only once it commits: a ``SET`` in
a transaction that rolls back (or in a savepoint rolled back to) is undone by
the server, so it is not restored either. What cannot be restored is
counted at once, even in a transaction that may roll back (advisory locks are
not transactional anyway): a refusal too many, never one too few.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .sql.effects import SessionEffect

#: Kinds of change that PostgreSQL undoes with a rolled-back transaction,
#: and that re-running the statement re-creates.
_SETTINGS = frozenset({"set", "reset", "reset_all"})

#: What each kind of held state is called in ``SessionStateLost``.
_HELD_NAMES = {
    "advisory_lock": "a session advisory lock",
    "temp_table": "a temporary table",
    "prepare": "a prepared statement",
    "listen": "LISTEN",
    "held_cursor": "a cursor WITH HOLD",
    "load": "a loaded library (LOAD)",
    "unknown": "a session change orca-db could not follow",
    "unverified": "a function call whose session changes could not be checked",
}

#: Settings that RESET ALL leaves as they are (GUC_NO_RESET_ALL; the
#: transaction_* ones are transaction-scoped, never followed), and changes
#: whose setting is not known.
_NOT_RESET_BY_ALL = frozenset({"role", "session_authorization", None})

#: Releases that a rolled-back transaction undoes.
_TRANSACTIONAL_RELEASES = frozenset({"discard_temp", "unlisten", "unlisten_all"})


@dataclasses.dataclass
class _Change:
    key: str | None  # the one setting a change sets, when known
    sql: object
    params: Any
    kind: str = "set"  # "set", "reset", "reset_all"; "check": see hidden_call


class SessionState:
    """The session changes of one Django connection (``DatabaseWrapper``),
    carried across the connections that replace a lost one."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """A new session the application asked for (it closed the old one)."""
        self._restorable: list[_Change] = []
        #: Restorable changes waiting for their transaction's end (a plain
        #: list: the backend tests it on every statement).
        self.pending: list[_Change] = []
        self._savepoints: list[tuple[str | None, int]] = []
        self._held: dict[str, int] = {}
        self._names: dict[str, set[str]] = {"prepare": set(), "listen": set()}
        #: The session was lost (the connection replaced after a fault)
        #: since the application last had it.
        self.lost = False
        #: The application called a function the tracker cannot see inside
        #: (``hidden_call``): from then on the session is checked against
        #: the server (docs/retry-safety.md, "Rule 1").
        self.verifying = False
        #: The server's fingerprint of the session (``FINGERPRINT``) after
        #: the last change, when it could be taken; None: unverified.
        self.expected: str | None = None

    @property
    def empty(self) -> bool:
        return not (self._restorable or self.pending or self._held)

    @property
    def fresh(self) -> bool:
        """As ``reset()`` leaves it (a close then has nothing to forget)."""
        names = self._names
        return (
            self.expected is None
            and not (self.lost or self.verifying or self._restorable or self.pending)
            and not (self._savepoints or self._held or names["prepare"] or names["listen"])
        )

    @property
    def changed(self) -> bool:
        """The application changed its session, or may have."""
        return self.verifying or not self.empty

    @property
    def settings_only(self) -> bool:
        """Only settings were changed, all followed: RESET ALL and RESET
        SESSION AUTHORIZATION undo them all."""
        return not (self.verifying or self._held or self.pending)

    def hidden_call(self, in_transaction: bool = False) -> None:
        """A statement called a function whose effects nobody can see from
        its text: what the session holds is now known only to the server
        (until ``verified``). In a transaction, a mark waits on its end,
        so that the backend sees the end and checks again."""
        self.verifying = True
        self.expected = None
        if in_transaction:
            self.pending.append(_Change(None, None, None, "check"))

    def verified(self, fingerprint: str | None) -> None:
        """The server's fingerprint after the last change (None: it could
        not be taken, e.g. inside a transaction)."""
        self.expected = fingerprint

    # ----- what the application did -----------------------------------------

    def observe(self, sql: object, params: Any, in_transaction: bool, text: object = None) -> None:
        """A statement that may change session state succeeded (``text``:
        its text, when ``sql`` is a psycopg ``Composed``)."""
        from .sql import session_effects

        settings: list[SessionEffect] = []
        for effect in session_effects(sql if text is None else text):
            if effect.transaction_scoped:
                continue
            if effect.kind in _SETTINGS:
                settings.append(effect)
            elif effect.kind in _TRANSACTIONAL_RELEASES and in_transaction:
                # UNLISTEN and DISCARD TEMP take effect at COMMIT, and a
                # rollback (of the transaction or to a savepoint) undoes
                # them: not followed, the state counts as still held (a
                # refusal too many, never one too few).
                continue
            else:
                self._hold(effect)
        if not settings:
            return
        if not all(effect.restorable for effect in settings):
            self._count("unknown")  # e.g. set_config(..., %s): local or not?
            return
        # One change per text, re-run as a whole: a text of several
        # settings is kept whole, in its place (no key to supersede it).
        only = settings[0] if len(settings) == 1 else None
        change = _Change(_key(only), sql, params, only.kind if only else "set")
        if in_transaction:
            self.pending.append(change)
        else:
            self._apply(change)

    def unfollowed(self, text: object) -> None:
        """A statement whose session changes are not followed (sent by
        ``executemany``, or ``COPY``): it makes the session unknown if it
        may change anything at all (``text`` None: it may)."""
        from .sql import session_effects

        if text is None or any(not e.transaction_scoped for e in session_effects(text)):
            self._count("unknown")

    def transaction_ended(self, committed: bool | None) -> None:
        """The open transaction committed (True), rolled back (False), or
        ended in a way nobody saw (None: e.g. through the driver itself)."""
        pending, self.pending, self._savepoints = self.pending, [], []
        changes = [change for change in pending if change.kind != "check"]
        if committed:
            for change in changes:
                self._apply(change)
        elif committed is None and changes:
            self._count("unknown")

    def savepoint(self, name: str | None) -> None:
        if self.pending:
            self._savepoints.append((name, len(self.pending)))

    def savepoint_released(self, name: str | None) -> None:
        for i in range(len(self._savepoints) - 1, -1, -1):
            if self._savepoints[i][0] == name:
                del self._savepoints[i:]
                return

    def rolled_back_to(self, name: str | None) -> None:
        """``ROLLBACK TO SAVEPOINT name``: the changes after it are undone.
        A savepoint made while nothing was pending is not recorded: rolling
        back to it undoes everything pending."""
        for i in range(len(self._savepoints) - 1, -1, -1):
            if self._savepoints[i][0] == name:
                del self.pending[self._savepoints[i][1] :]
                del self._savepoints[i + 1 :]
                return
        self.pending.clear()
        self._savepoints.clear()

    # ----- a new connection -------------------------------------------------

    def lost_items(self) -> tuple[str, ...]:
        """What a new session could not get back, in words."""
        held = set(self._held)
        if self.verifying and self.expected is None:
            held.add("unverified")
        return tuple(_HELD_NAMES[kind] for kind in sorted(held))

    def restore(self, execute: Callable[[object, Any], None]) -> int:
        """Apply the restorable changes again through ``execute(sql,
        params)``; how many statements that took."""
        for change in self._restorable:
            execute(change.sql, change.params)
        return len(self._restorable)

    # ----- bookkeeping --------------------------------------------------------

    def _apply(self, change: _Change) -> None:
        """Follow one committed change, keeping the list of changes to re-run
        short where that provably gives the same session: a later change of
        one setting supersedes an earlier one of the same setting, and
        ``RESET ALL`` every earlier one it resets. Everything else is kept
        in order, so re-running the list re-creates the session exactly."""
        if change.kind == "reset_all":
            # PostgreSQL's RESET ALL leaves role and session_authorization
            # as they are; a change whose setting is not known (a text of
            # several, set_config with a parameter) is kept: RESET ALL
            # re-run after it resets what it must.
            self._restorable = [c for c in self._restorable if c.key in _NOT_RESET_BY_ALL]
        elif change.key is not None:
            self._restorable = [c for c in self._restorable if c.key != change.key]
        self._restorable.append(change)

    def _hold(self, effect: SessionEffect) -> None:
        kind = effect.kind
        if kind == "discard_all":
            # SET SESSION AUTHORIZATION DEFAULT, RESET ALL, and every object
            # of the session released; not what a loaded library or an
            # unknown change did. Re-run as its two settings (DISCARD ALL
            # cannot run inside the restore's transaction): they also undo
            # what Django set up on connecting, as the original did.
            kept = {k: n for k, n in self._held.items() if k in ("load", "unknown")}
            self.reset()
            self._held = kept
            self._restorable = [
                _Change("session_authorization", "SET SESSION AUTHORIZATION DEFAULT", None),
                _Change(None, "RESET ALL", None, "reset_all"),
            ]
            return
        if kind == "discard_temp":
            self._held.pop("temp_table", None)
        elif kind == "advisory_unlock":
            self._count("advisory_lock", -1)
        elif kind == "advisory_unlock_all":
            self._held.pop("advisory_lock", None)
        elif kind in ("prepare", "listen"):
            self._names[kind].add(effect.name or "")
            self._held[kind] = len(self._names[kind])
        elif kind in ("deallocate", "unlisten", "deallocate_all", "unlisten_all"):
            held = "prepare" if kind.startswith("deallocate") else "listen"
            names = self._names[held]
            if kind.endswith("_all"):
                names.clear()
            else:
                names.discard(effect.name or "")
            self._count(held, len(names) - self._held.get(held, 0))
        elif kind in _HELD_NAMES:
            self._count(kind)
        # discard_plans, discard_sequences: nothing a new session lacks

    def _count(self, kind: str, delta: int = 1) -> None:
        count = self._held.get(kind, 0) + delta
        if count > 0:
            self._held[kind] = count
        else:
            self._held.pop(kind, None)


def _key(effect: SessionEffect | None) -> str | None:
    if effect is not None and effect.kind in ("set", "reset") and effect.name:
        return effect.name
    return None
