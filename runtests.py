#!/usr/bin/env python
"""Run the test suite once per database driver (psycopg 3, then psycopg2).

    python runtests.py                 # both drivers
    python runtests.py --driver psycopg2 -k connect   # one driver, pytest args

Each run starts its own throwaway PostgreSQL unless
ORCA_DB_TEST_DATABASE_URL names a server.
"""

import os
import subprocess
import sys

DRIVERS = ("psycopg", "psycopg2")


def main(argv: list[str]) -> int:
    drivers = DRIVERS
    if argv[:1] == ["--driver"]:
        drivers, argv = (argv[1],), argv[2:]
    failed = []
    for driver in drivers:
        print(f"=== tests with {driver} ===", flush=True)
        env = {**os.environ, "ORCA_DB_DRIVER": driver}
        code = subprocess.call([sys.executable, "-m", "pytest", *argv], env=env)
        if code != 0:
            failed.append(f"{driver} (exit {code})")
    if failed:
        print("failed: " + ", ".join(failed), flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
