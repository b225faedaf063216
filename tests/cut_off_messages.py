"""What a call cut off at its deadline says, word for word: the same on
both hosts (the Django backend, the SQLAlchemy plugin's ``.orig``), checked
by tests/test_deadlines.py and tests/test_sqlalchemy_deadlines.py.
Each is a ``str.format`` template of the database's ``alias``."""

from __future__ import annotations

READ = "A read on database {alias!r} was still running at its deadline and was cut off."
WRITE = (
    "A write on database {alias!r} was still running at its deadline and was cut off; "
    "it may or may not have been applied."
)
IN_TRANSACTION = (
    "A statement on database {alias!r} was still running at its deadline; it was cut "
    "off, and the server rolls its transaction back."
)
COMMIT = (
    "COMMIT on database {alias!r} was still running at its deadline and was cut off; "
    "the transaction may or may not have committed."
)
ROLLBACK = (
    "ROLLBACK on database {alias!r} was still waiting for the server at its deadline "
    "and was cut off: its connection was closed. Nothing of the transaction was "
    "committed: the server rolls it back when it sees the connection end (at once if "
    "the network carries the close; otherwise when its own TCP keepalive or "
    "client_connection_check_interval notices, its locks held until then)."
)
