#!/usr/bin/env python
"""Run SQLAlchemy's dialect compliance suite on the orca_db engine plugin.

    python scripts/sqlalchemy_suite.py                      # both drivers, stock and plugin
    python scripts/sqlalchemy_suite.py --driver psycopg2    # one driver
    python scripts/sqlalchemy_suite.py -- -k TransactionTest  # pytest arguments
    python scripts/sqlalchemy_suite.py --data-api           # the Data API dialect
    python scripts/sqlalchemy_suite.py --jobs 2             # two runs at a time

``sqlalchemy.testing.suite`` (the suite third-party dialects prove
themselves with) runs as they run it: SQLAlchemy's pytest plugin loaded
from a conftest, a requirements class, a ``[db]`` URL
(scripts/sqlalchemy_suite/). Each driver runs twice against the same
throwaway PostgreSQL: with the stock dialect and with ``?plugin=orca_db``,
each run in a database of its own (``--jobs N`` runs N at a time: most of a
run's time is spent waiting on the server).
The exit status is non-zero when the plugin fails a test the stock dialect
passes (or the two runs do not run the same tests); the counts of each run
are printed, and with ``--json FILE`` written there.

``--data-api`` runs the suite once more (alone), on the
``postgresql+aurora_data_api`` dialect through the local Data API endpoint
(orca_db.testing.data_api) in front of the same server. The tests it cannot
pass are listed with their reasons in scripts/sqlalchemy_suite/data_api_known.py
(strict xfails); any other failure fails the run.

The server is a throwaway PostgreSQL started by this script, unless
``--database-url`` (or ``ORCA_DB_TEST_DATABASE_URL``) names one whose user
may create databases.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ElementTree
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SUITE = Path(__file__).resolve().parent / "sqlalchemy_suite"
sys.path.insert(0, str(ROOT))

DRIVERS = ("psycopg", "psycopg2")
MODES = ("stock", "plugin")
DATABASE = "orca_sqla_suite"
# Schemas the suite's cross-schema tests expect (SQLAlchemy's README.dialects).
SCHEMAS = ("test_schema", "test_schema_2")


def database(driver: str, mode: str) -> str:
    return f"{DATABASE}_{driver}_{mode}"


def prepare(admin_url: str, name: str) -> None:
    """A fresh database ``name`` with the suite's schemas."""
    from sqlalchemy import create_engine, text

    engine = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        connection.execute(text(f"CREATE DATABASE {name}"))
    engine.dispose()
    engine = create_engine(admin_url.rsplit("/", 1)[0] + f"/{name}")
    with engine.begin() as connection:
        for schema in SCHEMAS:
            connection.execute(text(f"CREATE SCHEMA {schema}"))
    engine.dispose()


def results(junit: Path) -> dict[str, str]:
    """Test id -> passed / failed / skipped."""
    outcome = {}
    for case in ElementTree.parse(junit).iter("testcase"):
        name = f"{case.get('classname')}::{case.get('name')}"
        if case.find("failure") is not None or case.find("error") is not None:
            outcome[name] = "failed"
        elif case.find("skipped") is not None:
            outcome[name] = "skipped"
        else:
            outcome[name] = "passed"
    return outcome


def run(
    driver: str,
    mode: str,
    base_url: str,
    pytest_args: list[str],
    out: Path,
    extra_env: dict[str, str] | None = None,
) -> dict:
    url = base_url.replace("postgresql://", f"postgresql+{driver}://", 1)
    url = url.rsplit("/", 1)[0] + f"/{database(driver, mode)}"
    if mode == "plugin":
        url += "?plugin=orca_db"
    if mode == "data_api":
        url = f"postgresql+aurora_data_api:///{database(driver, mode)}"
    junit = out / f"{driver}-{mode}.xml"
    command = [
        sys.executable, "-m", "pytest", "-c", str(SUITE / "pytest.ini"),
        "--rootdir", str(SUITE), "--confcutdir", str(SUITE),
        "--dburi", url, "-q", "-p", "no:randomly", f"--junitxml={junit}", *pytest_args,
    ]  # fmt: skip
    env = {
        **os.environ,
        "PYTHONPATH": str(SUITE) + os.pathsep + str(ROOT),
        "ORCA_DB_SUITE_MODE": mode,
        **(extra_env or {}),
    }
    if driver == "psycopg2":
        # Only psycopg2 importable, as in tests/driver.py.
        hide = out / f"hide_psycopg_{mode}"
        hide.mkdir(exist_ok=True)
        (hide / "sitecustomize.py").write_text('import sys\n\nsys.modules["psycopg"] = None\n')
        env["PYTHONPATH"] = str(hide) + os.pathsep + env["PYTHONPATH"]
    started = time.monotonic()
    completed = subprocess.run(command, cwd=SUITE, env=env, capture_output=True, text=True)
    took = time.monotonic() - started
    tail = "\n".join(completed.stdout.strip().splitlines()[-1:])
    print(f"=== {driver} / {mode}: {tail} ({took:.0f} s)", flush=True)
    if not junit.exists():
        print(completed.stdout[-3000:], completed.stderr[-3000:], sep="\n")
        return {"driver": driver, "mode": mode, "outcome": {}, "seconds": took, "broken": True}
    outcome = results(junit)
    counts = {
        k: sum(1 for v in outcome.values() if v == k) for k in ("passed", "failed", "skipped")
    }
    counts["xfailed"] = completed.stdout.count("XFAIL") if mode == "data_api" else 0
    return {"driver": driver, "mode": mode, "outcome": outcome, "seconds": took, **counts}


def run_data_api(base_url: str, pytest_args: list[str]) -> tuple[bool, dict]:
    """The suite on the Data API dialect, through a local endpoint in front
    of the server of ``base_url``."""
    from urllib.parse import unquote, urlsplit

    from orca_db.testing.data_api import DataApiEndpoint

    prepare(base_url, database("aurora_data_api", "data_api"))
    parts = urlsplit(base_url)
    endpoint = DataApiEndpoint(
        parts.hostname or "127.0.0.1",
        parts.port or 5432,
        unquote(parts.username or "postgres"),
        unquote(parts.password or ""),
    ).start()
    try:
        aurora = {
            "cluster_arn": endpoint.cluster_arn,
            "secret": endpoint.secret_arn,
            "deadline": 20,
        }
        env = {**endpoint.environ(), "ORCA_DB_SUITE_AURORA": json.dumps(aurora)}
        with tempfile.TemporaryDirectory(prefix="orca-sqla-suite-") as tmp:
            result = run("aurora_data_api", "data_api", base_url, pytest_args, Path(tmp), env)
    finally:
        endpoint.stop()
    failures = sorted(n for n, r in result.pop("outcome").items() if r == "failed")
    for name in failures:
        print(f"    fails on the Data API dialect, not listed: {name}")
    broken = bool(result.get("broken"))
    return broken or bool(failures), {**result, "failed_tests": failures}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--driver", choices=DRIVERS, action="append")
    parser.add_argument("--database-url", default=os.environ.get("ORCA_DB_TEST_DATABASE_URL"))
    parser.add_argument("--json", type=Path, help="write the counts and differences here")
    parser.add_argument(
        "--data-api",
        action="store_true",
        help="run the postgresql+aurora_data_api dialect through the local endpoint only",
    )
    parser.add_argument("--jobs", type=int, default=1, help="runs at a time (default 1)")
    parser.add_argument("pytest_args", nargs="*")
    args = parser.parse_args(argv)
    server = None
    base_url = args.database_url
    if not base_url:
        from orca_db.testing.postgres import PostgresServer

        server = PostgresServer().start()
        base_url = server.url()
    started = time.monotonic()
    failed = False
    report = []
    try:
        if args.data_api:
            failed, entry = run_data_api(base_url, args.pytest_args)
            report.append(entry)
            args.driver = []
        with tempfile.TemporaryDirectory(prefix="orca-sqla-suite-") as tmp:
            drivers = DRIVERS if args.driver is None else args.driver
            for driver in drivers:
                for mode in MODES:
                    prepare(base_url, database(driver, mode))
            with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
                futures = {
                    (driver, mode): pool.submit(
                        run, driver, mode, base_url, args.pytest_args, Path(tmp)
                    )
                    for driver in drivers
                    for mode in MODES
                }
            for driver in drivers:
                runs = {mode: futures[driver, mode].result() for mode in MODES}
                stock, plugin = runs["stock"]["outcome"], runs["plugin"]["outcome"]
                only_plugin = sorted(
                    name for name, result in plugin.items()
                    if result == "failed" and stock.get(name) != "failed"
                )  # fmt: skip
                different = sorted(set(stock) ^ set(plugin))
                if not stock or only_plugin or different:
                    failed = True
                for name in only_plugin:
                    print(f"    fails only with the plugin: {name}")
                for name in different[:20]:
                    print(f"    run by one mode only: {name}")
                for mode in MODES:
                    entry = {k: v for k, v in runs[mode].items() if k != "outcome"}
                    entry["failed_tests"] = sorted(
                        n for n, r in runs[mode]["outcome"].items() if r == "failed"
                    )
                    report.append(entry)
                report.append({"driver": driver, "fails_only_with_plugin": only_plugin})
    finally:
        if server is not None:
            server.destroy()
    print(f"=== total {time.monotonic() - started:.0f} s; {'FAILED' if failed else 'same results'}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
