"""The project's embedded PostgreSQL: a persistent local server for
``migrate``, ``runserver`` and the demo on a machine with no database
configured. Lives in ``ORCA_DB_EMBEDDED_DIR`` (default ``.orca-db/`` in the
working directory) and keeps running between commands; stop it with
``pg_ctl -D .orca-db/data stop`` (as the user that owns it)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .postgres import PostgresServer

DEFAULT_DIR = ".orca-db"


def embedded_server() -> PostgresServer:
    base = Path(os.environ.get("ORCA_DB_EMBEDDED_DIR", DEFAULT_DIR)).resolve()
    return PostgresServer(base=base)


def embedded_database_settings() -> dict[str, Any]:
    server = embedded_server().ensure_running()
    return server.django_settings("postgres")
