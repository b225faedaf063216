#!/usr/bin/env python
"""Run the test suite once per database driver (psycopg 3 and psycopg2).

    python runtests.py                 # both drivers, side by side
    python runtests.py --sequential    # both drivers, one after the other
    python runtests.py --driver psycopg2 -k connect   # one driver, pytest args

Each run starts its own throwaway PostgreSQL unless
ORCA_DB_TEST_DATABASE_URL names a server (then the runs are sequential: they
would share its test database). Otherwise they share nothing but the
machine, so they run at the same time (most of a test's time is spent
waiting on a server); each run's output is printed whole when it ends, in
driver order.
"""

import contextlib
import os
import subprocess
import sys
import tempfile

DRIVERS = ("psycopg", "psycopg2")


def _command(argv: list[str]) -> list[str]:
    return [sys.executable, "-m", "pytest", *argv]


def _env(driver: str) -> dict[str, str]:
    return {**os.environ, "ORCA_DB_DRIVER": driver}


def run_sequentially(drivers: tuple[str, ...], argv: list[str]) -> dict[str, int]:
    codes = {}
    for driver in drivers:
        print(f"=== tests with {driver} ===", flush=True)
        codes[driver] = subprocess.call(_command(argv), env=_env(driver))
    return codes


def run_side_by_side(drivers: tuple[str, ...], argv: list[str]) -> dict[str, int]:
    codes = {}
    with contextlib.ExitStack() as files:
        runs = []
        for driver in drivers:
            output = files.enter_context(tempfile.TemporaryFile())
            process = subprocess.Popen(
                _command(argv), env=_env(driver), stdout=output, stderr=subprocess.STDOUT
            )
            runs.append((driver, process, output))
        print(f"=== tests with {', '.join(drivers)}, side by side ===", flush=True)
        for driver, process, output in runs:
            codes[driver] = process.wait()
            output.seek(0)
            print(f"=== tests with {driver} ===", flush=True)
            sys.stdout.buffer.write(output.read())
            sys.stdout.flush()
    return codes


def main(argv: list[str]) -> int:
    drivers = DRIVERS
    sequential = False
    if argv[:1] == ["--driver"]:
        drivers, argv = (argv[1],), argv[2:]
    if argv[:1] == ["--sequential"]:
        sequential, argv = True, argv[1:]
    # Against a server the user runs, both runs would create and drop the
    # same test database: one after the other, then.
    if os.environ.get("ORCA_DB_TEST_DATABASE_URL"):
        sequential = True
    if sequential or len(drivers) == 1:
        codes = run_sequentially(drivers, argv)
    else:
        codes = run_side_by_side(drivers, argv)
    failed = [f"{driver} (exit {code})" for driver, code in codes.items() if code != 0]
    if failed:
        print("failed: " + ", ".join(failed), flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
