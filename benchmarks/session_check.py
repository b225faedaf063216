"""What rule 1's server check costs: one read of the session's fingerprint
(``FINGERPRINT`` in orca_db/backends/session_check.py) against ``SELECT 1``, on a throwaway
local PostgreSQL, through psycopg 3 in autocommit. Paid only by an
application that calls functions outside the side-effect-free allowlist
(docs/retry-safety.md, "Changes the text does not show").

    python -m benchmarks.session_check [--runs N]
"""

from __future__ import annotations

import argparse
import statistics
import time


def _median_micros(cursor, sql: str, runs: int) -> float:
    for _ in range(100):
        cursor.execute(sql)
        cursor.fetchall()
    batches = []
    for _ in range(5):
        started = time.perf_counter()
        for _ in range(runs):
            cursor.execute(sql)
            cursor.fetchall()
        batches.append((time.perf_counter() - started) / runs * 1e6)
    return statistics.median(batches)


def main() -> None:
    import psycopg

    from orca_db.backends.session_check import FINGERPRINT
    from orca_db.testing.postgres import PostgresServer

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2000)
    runs = parser.parse_args().runs
    server = PostgresServer().start()
    try:
        with psycopg.connect(server.url(), autocommit=True) as connection:
            cursor = connection.cursor()
            cursor.execute("SET search_path TO public")  # one session setting
            plain = _median_micros(cursor, "SELECT 1", runs)
            check = _median_micros(cursor, FINGERPRINT, runs)
        print(f"SELECT 1: {plain:.0f} us; fingerprint: {check:.0f} us (median of 5 x {runs})")
    finally:
        server.destroy()


if __name__ == "__main__":
    main()
