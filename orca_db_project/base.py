"""``ENGINE: "orca_db_project"``: the aurora engine on the project's embedded
PostgreSQL, which it starts at the first connection (``initdb`` the first
time, in ``ORCA_DB_EMBEDDED_DIR``, default ``.orca-db/``) rather than when the
settings are loaded. It fills in ``HOST``, ``PORT`` and ``PASSWORD`` of a
database whose ``HOST`` is empty; one with a ``HOST`` (the demo's alias
through the Aurora simulator, say) is connected to as it is."""

from __future__ import annotations

import threading
from typing import Any

from orca_db.backends.aurora import base as aurora

_lock = threading.Lock()
#: Connection settings of the embedded servers this process started or
#: found running, by directory.
_running: dict[str, dict[str, Any]] = {}


def embedded_settings() -> dict[str, Any]:
    """``HOST``, ``PORT``, ``USER``, ``PASSWORD`` of the embedded server,
    started first if it is not running."""
    from orca_db_project import state_dir

    directory = str(state_dir().resolve())
    with _lock:
        if directory not in _running:
            from orca_db.testing.embedded import embedded_database_settings

            _running[directory] = embedded_database_settings()
        return _running[directory]


class DatabaseWrapper(aurora.DatabaseWrapper):
    def get_connection_params(self) -> dict[str, Any]:
        if not self.settings_dict.get("HOST"):
            # Shared with connections.settings: every thread's wrapper of this
            # alias, and copies made from now on, see where the server is.
            self.settings_dict.update(embedded_settings())
        return super().get_connection_params()
