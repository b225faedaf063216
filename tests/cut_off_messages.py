"""What a call cut off at its deadline says, word for word: the same on
both hosts (the Django backend, the SQLAlchemy plugin's ``.orig``), checked
by tests/test_deadlines.py and tests/test_sqlalchemy_deadlines.py."""

from __future__ import annotations


def read(alias: str) -> str:
    return f"A read on database {alias!r} was still running at its deadline and was cut off."


def write(alias: str) -> str:
    return (
        f"A write on database {alias!r} was still running at its deadline and was cut off; "
        f"it may or may not have been applied."
    )


def in_transaction(alias: str) -> str:
    return (
        f"A statement on database {alias!r} was still running at its deadline; it was cut "
        f"off, and the server rolls its transaction back."
    )


def commit(alias: str) -> str:
    return (
        f"COMMIT on database {alias!r} was still running at its deadline and was cut off; "
        f"the transaction may or may not have committed."
    )


def rollback(alias: str) -> str:
    return (
        f"ROLLBACK on database {alias!r} was still waiting for the server at its deadline "
        f"and was cut off: its connection was closed. Nothing of the transaction was "
        f"committed: the server rolls it back when it sees the connection end (at once if "
        f"the network carries the close; otherwise when its own TCP keepalive or "
        f"client_connection_check_interval notices, its locks held until then)."
    )
