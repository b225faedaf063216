"""Pick the database driver for this test run from ``ORCA_DB_DRIVER``.

Django uses psycopg 3 whenever it can import it; hiding it (a ``None`` entry
in ``sys.modules`` makes ``import psycopg`` fail) makes Django use psycopg2.
"""

import os
import sys

DRIVER = os.environ.get("ORCA_DB_DRIVER", "psycopg")
if DRIVER not in ("psycopg", "psycopg2"):
    raise SystemExit(f"ORCA_DB_DRIVER must be psycopg or psycopg2, not {DRIVER!r}")
if DRIVER == "psycopg2":
    sys.modules["psycopg"] = None  # type: ignore[assignment]
