"""The project's embedded PostgreSQL: a persistent local server for
``migrate``, ``runserver`` and the demo on a machine with no database
configured. Lives in ``ORCA_DB_EMBEDDED_DIR`` (default ``.orca-db/`` in the
working directory) and keeps running between commands; stop it with::

    python -m orca_db.testing.embedded stop

(as root too: the server runs as an unprivileged user, and so does the
``pg_ctl`` this runs; ``pg_ctl`` itself refuses to run as root).
``status`` and ``start`` exist too (docs/settings.md#the-embedded-server).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .postgres import PostgresNotFound, PostgresServer

DEFAULT_DIR = ".orca-db"


def embedded_dir() -> Path:
    return Path(os.environ.get("ORCA_DB_EMBEDDED_DIR") or DEFAULT_DIR).resolve()


def embedded_server(base: Path | None = None) -> PostgresServer:
    return PostgresServer(base=base or embedded_dir())


def embedded_database_settings() -> dict[str, Any]:
    server = embedded_server().ensure_running()
    return server.django_settings("postgres")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m orca_db.testing.embedded",
        description=(
            "Control the project's embedded PostgreSQL (the server manage.py starts "
            "when DATABASE_URL is unset)."
        ),
        epilog=(
            "commands:\n"
            "  status   say whether it runs, and on which port (exit 0 running, 1 not)\n"
            "  start    start it (initdb the first time)\n"
            "  stop     stop it (a fast shutdown); delete the directory to start over"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "command", choices=["status", "start", "stop"], metavar="command", help="see below"
    )
    parser.add_argument(
        "--dir",
        type=Path,
        default=None,
        help="its directory (default: $ORCA_DB_EMBEDDED_DIR, else .orca-db in the "
        "working directory)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    base = (args.dir or embedded_dir()).resolve()
    if not (base / "data" / "PG_VERSION").exists() and args.command != "start":
        print(f"No embedded PostgreSQL in {base}: nothing is running.")
        return 0 if args.command == "stop" else 1
    try:
        server = embedded_server(base)
    except PostgresNotFound as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    where = f"the embedded PostgreSQL in {base} (127.0.0.1:{server.port})"
    running = server.is_running()
    if args.command == "status":
        print(f"{where[0].upper()}{where[1:]} is {'running' if running else 'stopped'}.")
        return 0 if running else 1
    if args.command == "start":
        if running:
            print(f"{where[0].upper()}{where[1:]} is already running.")
            return 0
        server.start()
        print(f"Started {where}.")
        return 0
    if not running:
        print(f"{where[0].upper()}{where[1:]} is not running.")
        return 0
    server.stop()
    if server.is_running():
        print(f"error: {where} did not stop; see {server.logfile}", file=sys.stderr)
        return 1
    print(f"Stopped {where}.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
