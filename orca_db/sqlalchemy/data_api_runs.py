"""What :func:`orca_db.sqlalchemy.run_transaction` needs to know of an
engine of the Data API dialect (``postgresql+aurora_data_api``).

Its driver connection reads as libpq's (transaction status, closed once
its transaction was lost), its raw cursor runs the resolution's queries
(``pg_current_xact_id``, ``pg_backend_pid``, ``pg_control_system``,
``pg_xact_status``) as calls of their own, and its retry settings are the
dialect's (``aurora={...}``): :mod:`.runs` needs nothing else. One thing
differs: the name of the operation. The dialect's calls are retried under
the database's name (``postgres`` for a URL without one); run_transaction
must use the same, or each call would retry on its own inside it. And a
driver connection of the dialect is no session: the cluster's identity is
read again in each transaction, never kept from an earlier one."""

from __future__ import annotations

from sqlalchemy.engine import Engine

__all__ = ["is_data_api", "operation_alias"]


def is_data_api(engine: Engine) -> bool:
    return getattr(engine.dialect, "retry_settings", None) is not None


def operation_alias(engine: Engine) -> str:
    """The name of ``engine``'s operations: the one its calls (the Data API
    dialect's) or its connects (the plugin's) are retried under."""
    if is_data_api(engine):
        return engine.url.database or "postgres"  # as the dialect's connect()
    return engine.url.database or "default"
