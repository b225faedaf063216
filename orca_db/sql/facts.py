"""What :func:`orca_db.sql.profile` answers: the :class:`Profile` of a
statement text. A module of its own so that the cache
(``orca_db.sql.lexical``) and the lexical analysis that fills it
(``orca_db.sql.analysis``, loaded on the first new text) both import it,
and neither imports the other at its top."""

from __future__ import annotations

from typing import Any, Final


class Profile:
    """The lexical facts about one statement text. Immutable; compares
    equal by value. (A plain class with slots rather than a NamedTuple:
    as fast to read, and nothing to build at import.)"""

    _FIELDS = (
        "first", "control", "savepoint_name", "chain", "maybe_read", "session", "multiple",
        "calls",
    )  # fmt: skip
    __slots__ = (*_FIELDS, "observed", "tracked", "may_write")

    first: str
    """The first keyword, upper-cased, after comments, spaces and opening
    parentheses ("SELECT" for ``(SELECT 1) UNION (SELECT 2)``); '' when
    the text starts with something else or is empty."""
    control: str | None
    """Transaction control: None, "begin" (BEGIN, START TRANSACTION),
    "commit" (COMMIT, END), "rollback" (ROLLBACK, ABORT), "savepoint",
    "release", "rollback_to" (ROLLBACK TO [SAVEPOINT]),
    "prepare_transaction", "commit_prepared", "rollback_prepared"; and
    "mixed" for a text of several statements where one after the first
    controls the transaction."""
    savepoint_name: str | None
    """For savepoint, release and rollback_to: the name as the server sees
    it (unquoted names folded to lower case, quoted ones exact)."""
    chain: bool
    """COMMIT/ROLLBACK AND CHAIN: a new transaction starts at once."""
    maybe_read: bool
    """One statement that starts like a read (SELECT, VALUES, TABLE, WITH,
    SHOW, EXPLAIN without ANALYZE) and shows no sign of a write in its text
    (INTO, a locking clause, a data-modifying WITH, session state). Only a
    hint: necessary, not sufficient, for ``is_replayable_read``."""
    session: bool
    """The statement may change session state (SET, temp tables, session
    advisory locks, ...; see ``session_effects``). No false negatives for
    what the text shows; a function of your own that changes session state
    inside cannot be seen."""
    multiple: bool
    """More than one statement in the text."""
    calls: bool
    """The text may call a function that is not a built-in known to be free
    of side effects (``SELECT my_function()``, ``CALL p()``): one the session
    tracker cannot see inside. Lexical, so it errs towards True (a name
    before a parenthesis that is not a call); the precise answer parses."""

    def __init__(
        self,
        first: str,
        control: str | None = None,
        savepoint_name: str | None = None,
        chain: bool = False,
        maybe_read: bool = False,
        session: bool = False,
        multiple: bool = False,
        calls: bool = False,
    ):
        values = (first, control, savepoint_name, chain, maybe_read, session, multiple, calls)
        for name, value in zip(self._FIELDS, values, strict=True):
            object.__setattr__(self, name, value)
        # Derived, for the backend's hot path: one read tells whether the
        # session tracker may need to see this statement.
        object.__setattr__(self, "observed", session or calls or control is not None)
        object.__setattr__(self, "tracked", session or calls)
        object.__setattr__(self, "may_write", calls or not maybe_read)

    observed: bool
    """``session``, ``calls``, or transaction control: the session tracker
    may need to see it."""
    tracked: bool
    """``session`` or ``calls``: the session tracker must see it."""
    may_write: bool
    """``calls`` or not ``maybe_read``: it may write (a host asks whether
    the connection is still open before sending it in autocommit)."""

    def _values(self) -> tuple[Any, ...]:
        return tuple(getattr(self, name) for name in self._FIELDS)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("Profile is immutable")

    def __delattr__(self, name: str) -> None:
        raise AttributeError("Profile is immutable")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Profile):
            return NotImplemented
        return self._values() == other._values()

    def __hash__(self) -> int:
        return hash(self._values())

    def __repr__(self) -> str:
        pairs = zip(self._FIELDS, self._values(), strict=True)
        fields = ", ".join(f"{name}={value!r}" for name, value in pairs)
        return f"Profile({fields})"


# Returned for what is not text (psycopg.sql.Composed, ...): nothing known,
# so nothing promised.
UNKNOWN: Final = Profile("", session=True)
