"""SessionState (orca_db.session) without a database: only what its
docstring promises and what any model of it must keep.

- restorable changes (SET, RESET, SET ROLE, set_config(..., false)) are
  applied again on a new session, in order, with their original parameters,
  leaving the new session as the old one was;
- changes made inside a transaction count only once it commits; a rollback,
  or a rollback to a savepoint, undoes those after it;
- anything else held (session advisory locks, temporary tables, prepared
  statements, LISTEN, cursors WITH HOLD, LOAD, a change that could not be
  followed) makes the new session lost, even from a transaction that rolls
  back.

Kept in a file of its own: SessionState is being reshaped (issue 22); these
tests hold its promises, not its shape.
"""

from __future__ import annotations

import pytest

from orca_db.session import SessionState

# ----- what PostgreSQL does with each statement used here ------------------------

#: statement -> (parameter, value) it sets; set_config takes its value from
#: the parameters.
SETS = {
    "SET search_path TO tenant42": ("search_path", "tenant42"),
    "SET search_path TO tenant43": ("search_path", "tenant43"),
    "SET ROLE app_reader": ("role", "app_reader"),
    "SET ROLE app_writer": ("role", "app_writer"),
    "SET TIME ZONE 'Europe/Paris'": ("timezone", "Europe/Paris"),
    "SET statement_timeout = %s": ("statement_timeout", None),
    "SELECT set_config('app.tenant', %s, false)": ("app.tenant", None),
}
#: RESET ALL leaves these alone (PostgreSQL marks them GUC_NO_RESET_ALL:
#: SET ROLE x; RESET ALL; SELECT current_user gives x).
NOT_RESET_BY_RESET_ALL = frozenset({"role", "session_authorization"})


def session_after(statements) -> dict[str, object]:
    """The settings a session holds after ``statements`` ((sql, params)
    pairs), as PostgreSQL applies them."""
    state: dict[str, object] = {}
    for sql, params in statements:
        if sql == "RESET ALL":
            state = {k: v for k, v in state.items() if k in NOT_RESET_BY_RESET_ALL}
        elif sql.startswith("RESET "):
            state.pop(sql.split()[1].lower(), None)
        else:
            name, value = SETS[sql]
            state[name] = params[0] if value is None else value
    return state


def restored(state: SessionState) -> list[tuple[object, object]]:
    """What a new session is sent, in order."""
    sent: list[tuple[object, object]] = []
    state.restore(lambda sql, params: sent.append((sql, params)))
    return sent


# ----- restorable changes, in order -------------------------------------------------------


def test_restorable_changes_are_sent_again_in_order_with_their_parameters():
    state = SessionState()
    statements = [
        ("SET search_path TO tenant42", None),
        ("SET ROLE app_reader", None),
        ("SELECT set_config('app.tenant', %s, false)", ["42"]),
        ("SET statement_timeout = %s", ["5s"]),
        ("SET TIME ZONE 'Europe/Paris'", None),
    ]
    for sql, params in statements:
        state.observe(sql, params, False)
    assert restored(state) == statements
    assert state.lost_items() == ()


@pytest.mark.parametrize(
    "statements",
    [
        pytest.param(
            [
                ("SET search_path TO tenant42", None),
                ("SET ROLE app_reader", None),
                ("SET search_path TO tenant43", None),
            ],
            id="the last value of a setting wins",
        ),
        pytest.param(
            [
                ("SET ROLE app_reader", None),
                ("SET ROLE app_writer", None),
                ("SET ROLE app_reader", None),
            ],
            id="a value set again after another",
        ),
        pytest.param(
            [
                ("SELECT set_config('app.tenant', %s, false)", ["42"]),
                ("SELECT set_config('app.tenant', %s, false)", ["43"]),
            ],
            id="set_config, each with its own parameters",
        ),
        pytest.param(
            [("SET search_path TO tenant42", None), ("RESET search_path", None)],
            id="RESET undoes a SET",
        ),
        pytest.param(
            [
                ("SET search_path TO tenant42", None),
                ("SET TIME ZONE 'Europe/Paris'", None),
                ("RESET ALL", None),
                ("SET search_path TO tenant43", None),
            ],
            id="RESET ALL undoes the settings before it",
        ),
        pytest.param(
            [("SET ROLE app_reader", None), ("RESET ALL", None)],
            id="RESET ALL leaves the role",
        ),
    ],
)
def test_a_new_session_gets_the_same_settings(statements):
    state = SessionState()
    for sql, params in statements:
        state.observe(sql, params, False)
    assert session_after(restored(state)) == session_after(statements)


# ----- inside a transaction: only what commits counts ------------------------------------


def in_transaction(state: SessionState, *steps) -> None:
    """Run ``steps`` inside a transaction: SQL text (a SET), or
    ("savepoint" | "release" | "rollback to", name)."""
    for step in steps:
        if isinstance(step, str):
            state.observe(step, None, True)
        elif step[0] == "savepoint":
            state.savepoint(step[1])
        elif step[0] == "release":
            state.savepoint_released(step[1])
        else:
            state.rolled_back_to(step[1])


A = "SET search_path TO tenant42"
B = "SET ROLE app_reader"
C = "SET TIME ZONE 'Europe/Paris'"
# Django's savepoint names
S1, S2 = "s140245_x1", "s140245_x2"


def test_a_set_in_a_transaction_counts_once_it_commits():
    state = SessionState()
    in_transaction(state, A)
    assert restored(state) == []  # the transaction may still roll back
    state.transaction_ended(True)
    assert restored(state) == [(A, None)]


def test_a_set_in_a_transaction_that_rolls_back_is_not_restored():
    state = SessionState()
    state.observe(C, None, False)
    in_transaction(state, A, B)
    state.transaction_ended(False)
    assert restored(state) == [(C, None)]


@pytest.mark.parametrize(
    "steps, kept",
    [
        pytest.param(
            (A, ("savepoint", S1), B, ("rollback to", S1)), [A], id="rollback to a savepoint"
        ),
        pytest.param(
            (("savepoint", S1), A, B, ("rollback to", S1)),
            [],
            id="a savepoint made before any SET",
        ),
        pytest.param(
            (A, ("savepoint", S1), B, ("savepoint", S2), C, ("rollback to", S2)),
            [A, B],
            id="the inner of two savepoints",
        ),
        pytest.param(
            (A, ("savepoint", S1), B, ("savepoint", S2), C, ("rollback to", S1)),
            [A],
            id="the outer of two savepoints",
        ),
        pytest.param(
            (A, ("savepoint", S1), B, ("savepoint", S2), C, ("release", S2), ("rollback to", S1)),
            [A],
            id="an inner savepoint released, then the outer rolled back to",
        ),
        pytest.param(
            (A, ("savepoint", S1), B, ("release", S1), C),
            [A, B, C],
            id="a savepoint released keeps its SETs",
        ),
        pytest.param(
            (A, ("savepoint", S1), B, ("rollback to", S1), C, ("rollback to", S1)),
            [A],
            id="the same savepoint rolled back to twice",
        ),
        pytest.param(
            (A, ("savepoint", S1), B, ("savepoint", S1), C, ("rollback to", S1)),
            [A, B],
            id="a name used twice: the latest savepoint",
        ),
    ],
)
def test_a_rollback_to_a_savepoint_undoes_the_sets_after_it(steps, kept):
    state = SessionState()
    in_transaction(state, *steps)
    state.transaction_ended(True)
    assert restored(state) == [(sql, None) for sql in kept]


# ----- what a new session cannot get back --------------------------------------------


@pytest.mark.parametrize(
    "sql, params, lost",
    [
        ("SELECT pg_advisory_lock(%s)", [42], "a session advisory lock"),
        ("SELECT pg_try_advisory_lock(42)", None, "a session advisory lock"),
        ("CREATE TEMP TABLE batch (id int)", None, "a temporary table"),
        ("PREPARE item_by_id AS SELECT 1", None, "a prepared statement"),
        ("LISTEN item_changed", None, "LISTEN"),
        ("DECLARE items CURSOR WITH HOLD FOR SELECT 1", None, "a cursor WITH HOLD"),
        ("LOAD 'auto_explain'", None, "a loaded library (LOAD)"),
        # local or not? set_config's third argument is a parameter
        (
            "SELECT set_config('app.tenant', %s, %s)",
            ["42", False],
            "a session change orca-db could not follow",
        ),
    ],
    ids=lambda value: value.split(" (")[0] if isinstance(value, str) else "",
)
def test_what_a_session_holds_makes_it_lost(sql, params, lost):
    state = SessionState()
    state.observe("SET search_path TO tenant42", None, False)
    assert state.lost_items() == ()
    state.observe(sql, params, False)
    assert lost in state.lost_items()


def test_a_lock_taken_in_a_transaction_that_rolls_back_still_counts():
    """A refusal too many, never one too few (session advisory locks are not
    transactional anyway)."""
    state = SessionState()
    state.observe("SELECT pg_advisory_lock(42)", None, True)
    state.transaction_ended(False)
    assert state.lost_items() == ("a session advisory lock",)


def test_held_objects_are_named_once_each():
    state = SessionState()
    for sql in (
        "SELECT pg_advisory_lock(1)",
        "SELECT pg_advisory_lock(2)",
        "CREATE TEMP TABLE batch (id int)",
    ):
        state.observe(sql, None, False)
    assert sorted(state.lost_items()) == ["a session advisory lock", "a temporary table"]


# ----- fresh: what close() may skip ------------------------------------------------

#: Steps that change the record, and steps that undo a change: each walk
#: below is a mix, checked after every step.
STEPS = {
    "set": lambda s: s.observe(A, None, False),
    "set in a transaction": lambda s: s.observe(B, None, True),
    "savepoint": lambda s: s.savepoint(S1),
    "rollback to it": lambda s: s.rolled_back_to(S1),
    "release it": lambda s: s.savepoint_released(S1),
    "commit": lambda s: s.transaction_ended(True),
    "rollback": lambda s: s.transaction_ended(False),
    "ended unseen": lambda s: s.transaction_ended(None),
    "prepare": lambda s: s.observe("PREPARE item_by_id AS SELECT 1", None, False),
    "deallocate": lambda s: s.observe("DEALLOCATE item_by_id", None, False),
    "listen": lambda s: s.observe("LISTEN item_changed", None, False),
    "unlisten": lambda s: s.observe("UNLISTEN item_changed", None, False),
    "lock": lambda s: s.observe("SELECT pg_advisory_lock(42)", None, False),
    "unlock": lambda s: s.observe("SELECT pg_advisory_unlock(42)", None, False),
    "discard all": lambda s: s.observe("DISCARD ALL", None, False),
    "hidden call": lambda s: s.hidden_call(),
    "hidden call in a transaction": lambda s: s.hidden_call(True),
    "verified": lambda s: s.verified("fingerprint"),
    "lost": lambda s: setattr(s, "lost", True),
    "reset": lambda s: s.reset(),
}


@pytest.mark.parametrize(
    "walk",
    [
        ["set", "reset"],
        ["set in a transaction", "rollback"],
        ["set in a transaction", "savepoint", "set in a transaction", "rollback to it", "commit"],
        ["savepoint", "release it", "set in a transaction", "ended unseen"],
        ["prepare", "deallocate", "listen", "unlisten"],
        ["lock", "unlock", "discard all", "reset"],
        ["hidden call", "verified", "reset", "hidden call in a transaction", "rollback"],
        ["lost", "reset", "verified", "reset"],
    ],
    ids=lambda walk: ", ".join(walk),
)
def test_fresh_is_exactly_what_reset_leaves(walk):
    """close() skips the reset of a fresh session (a request's usual one):
    ``fresh`` must be true exactly when the record equals a reset one, or a
    closed session would carry something over to the next."""
    state = SessionState()
    assert state.fresh
    for step in walk:
        STEPS[step](state)
        assert state.fresh == (vars(state) == vars(SessionState())), step
