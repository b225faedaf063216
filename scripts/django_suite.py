#!/usr/bin/env python
"""Run Django's own test suite against orca-db's backend.

    python scripts/django_suite.py                      # aurora backend, both drivers
    python scripts/django_suite.py --driver psycopg2    # one driver
    python scripts/django_suite.py --compare            # also Django's stock backend
    python scripts/django_suite.py basic queries        # some apps only
    python scripts/django_suite.py --engine data_api    # the Data API engine

The Django source distribution of the *installed* Django version is
downloaded once from the package index (``pip download``) into the cache
directory, and its ``tests/`` tree is run by its own ``runtests.py`` with a
settings module written next to it. The database is a throwaway PostgreSQL
started by this script, unless ``--database-url`` (or
``ORCA_DB_TEST_DATABASE_URL``) names a server whose user may create
databases.

With ``--compare`` the same apps also run against
``django.db.backends.postgresql``, and the tests that fail only with orca-db
are listed: those are ours to fix or to declare in
``orca_db/backends/aurora/features.py``. The exit status is non-zero when a
run fails (or, with ``--compare``, when orca-db fails a test that the stock
backend passes).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DEFAULT_APPS = [
    "backends", "transactions", "transaction_hooks", "basic", "queries",
    "select_for_update", "model_fields", "migrations", "schema", "postgres_tests",
]  # fmt: skip
DRIVERS = ("psycopg", "psycopg2")
ENGINES = {
    "aurora": "orca_db.backends.aurora",
    "stock": "django.db.backends.postgresql",
    # Through a local Data API endpoint (orca_db.testing.data_api) this
    # script starts in front of the same server.
    "data_api": "orca_db.backends.aurora_data_api",
}
DEFAULT_CACHE = ROOT / ".orca-db" / "django-suite"

# Written into Django's tests/ directory. The connection settings come from
# the environment, so the same file serves every run (and the worker
# processes of --parallel, which import it again when spawned).
SETTINGS_MODULE = '''\
"""Written by orca-db's scripts/django_suite.py: settings for Django's tests."""

import json
import os

_driver = os.environ.get("ORCA_DB_DRIVER", "psycopg")
if _driver == "psycopg2":
    try:
        import psycopg  # noqa: F401
    except ImportError:
        pass
    else:
        raise RuntimeError("psycopg 3 is importable: the psycopg2 run would use it")

# Everything but the databases as this Django release's tests expect it
# (DEFAULT_AUTO_FIELD, for one, changed in Django 6.0).
from test_sqlite import *  # noqa: E402, F403

_database = json.loads(os.environ["ORCA_DB_SUITE_DATABASE"])
_engine = os.environ["ORCA_DB_SUITE_ENGINE"]

DATABASES = {
    "default": {**_database, "ENGINE": _engine, "NAME": "django"},
    "other": {**_database, "ENGINE": _engine, "NAME": "django_other"},
}
'''

# Put first on PYTHONPATH for psycopg2 runs: every interpreter of the run
# (runtests.py and its --parallel workers) then fails `import psycopg`, and
# Django falls back to psycopg2, as in tests/driver.py.
SITECUSTOMIZE = """\
import sys

sys.modules["psycopg"] = None
"""

FAILURE_LINE = re.compile(r"^(ERROR|FAIL|UNEXPECTED SUCCESS): (\S+) \((\S+)\)", re.M)
SUMMARY_LINE = re.compile(r"^Ran (\d+) tests? in ([\d.]+)s", re.M)


def django_version() -> str:
    import django

    return django.__version__


def fetch_tests(version: str, cache: Path) -> Path:
    """Django's ``tests/`` directory for ``version``, downloaded if needed."""
    target = cache / f"django-{version}" / "tests"
    if (target / "runtests.py").exists():
        return target
    downloads = cache / "sdist"
    downloads.mkdir(parents=True, exist_ok=True)
    archive = next(iter(downloads.glob(f"[dD]jango-{version}.tar.gz")), None)
    if archive is None:
        subprocess.run(
            [
                sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
                "--no-binary", ":all:", f"django=={version}", "--dest", str(downloads),
            ],
            check=True,
        )  # fmt: skip
        archive = next(downloads.glob(f"[dD]jango-{version}.tar.gz"))
    prefix = archive.name[: -len(".tar.gz")] + "/tests/"
    staging = Path(tempfile.mkdtemp(prefix="django-tests-", dir=cache))
    with tarfile.open(archive) as tar:
        members = [m for m in tar.getmembers() if m.name.startswith(prefix)]
        tar.extractall(staging, members=members, filter="data")
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(target, ignore_errors=True)
    (staging / prefix).rename(target)
    shutil.rmtree(staging, ignore_errors=True)
    return target


def database_settings(url: str | None) -> tuple[dict, object | None]:
    """Connection settings (without ENGINE/NAME) and the server we started."""
    if url:
        from orca_db_project import parse_database_url

        settings = parse_database_url(url)
        keys = ("USER", "PASSWORD", "HOST", "PORT", "OPTIONS")
        return {k: settings[k] for k in keys if k in settings}, None
    from orca_db.testing.postgres import PostgresServer

    server = PostgresServer().start()
    settings = server.django_settings()
    settings.pop("NAME")
    return settings, server


def run_suite(
    tests_dir: Path,
    *,
    engine: str,
    driver: str,
    database: dict,
    apps: list[str],
    parallel: int,
    log: Path,
    extra: list[str],
) -> dict:
    (tests_dir / "orca_db_suite_settings.py").write_text(SETTINGS_MODULE)
    endpoint = None
    if engine == "data_api":
        from orca_db.testing.data_api import DataApiEndpoint

        endpoint = DataApiEndpoint.for_database(database).start()
        database = {"OPTIONS": endpoint.django_settings("django")["OPTIONS"]}
    env = {
        **os.environ,
        **(endpoint.environ() if endpoint else {}),
        "ORCA_DB_DRIVER": driver,
        "ORCA_DB_SUITE_ENGINE": ENGINES[engine],
        "ORCA_DB_SUITE_DATABASE": json.dumps(database),
        # runtests.py imports the installed Django, and orca_db from here.
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    if driver == "psycopg2":
        hide = tests_dir.parent / "hide-psycopg"
        hide.mkdir(exist_ok=True)
        (hide / "sitecustomize.py").write_text(SITECUSTOMIZE)
        env["PYTHONPATH"] = os.pathsep.join([str(hide), env["PYTHONPATH"]])
    command = [
        sys.executable, "runtests.py", "--settings", "orca_db_suite_settings",
        f"--parallel={parallel}", "--noinput", *extra, *apps,
    ]  # fmt: skip
    print(f"=== Django {django_version()} suite: {engine} backend, {driver} ===", flush=True)
    started = time.monotonic()
    with open(log, "w") as out:
        # Its own process group: if this script is stopped, the run and its
        # --parallel workers are stopped with it.
        process = subprocess.Popen(
            command, cwd=tests_dir, env=env, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        try:
            code = process.wait()
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
                process.wait()
            if endpoint is not None:
                endpoint.stop()
    elapsed = time.monotonic() - started
    text = log.read_text()
    # The id as Django's expected-failure lists spell it: "module.Class.test".
    failures = sorted(
        {_test_id(kind, name, where) for kind, name, where in FAILURE_LINE.findall(text)}
    )
    summary = SUMMARY_LINE.search(text)
    status = re.findall(r"^(?:OK|FAILED)\b.*$", text, re.M)
    tail = f"{summary[0] if summary else 'no test ran'}; {status[-1] if status else '?'}"
    print(f"{tail} ({elapsed / 60:.1f} min, exit {code}, log {log})", flush=True)
    return {
        "engine": engine,
        "driver": driver,
        "exit": code,
        "tests": int(summary[1]) if summary else 0,
        "minutes": round(elapsed / 60, 2),
        "failures": failures,
    }


def _test_id(kind: str, name: str, where: str) -> str:
    # unittest prints "test_x (module.Class.test_x)" on Python 3.11+.
    return where if where.endswith("." + name) else f"{where}.{name}"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("apps", nargs="*", help=f"test labels (default: {' '.join(DEFAULT_APPS)})")
    parser.add_argument("--driver", choices=DRIVERS, action="append", help="default: both")
    parser.add_argument(
        "--engine", choices=["aurora", "data_api"], default="aurora", help="default: aurora"
    )
    parser.add_argument("--compare", action="store_true", help="also run the stock backend")
    parser.add_argument("--stock-only", action="store_true", help="only the stock backend")
    parser.add_argument("--parallel", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--database-url", default=os.environ.get("ORCA_DB_TEST_DATABASE_URL"))
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--report", type=Path, help="write the results as JSON here")
    args, extra = parser.parse_known_args(argv)

    apps = args.apps or DEFAULT_APPS
    drivers = args.driver or list(DRIVERS)
    ours = args.engine
    engines = ["stock"] if args.stock_only else [ours, "stock"] if args.compare else [ours]
    cache = args.cache_dir.resolve()
    tests_dir = fetch_tests(django_version(), cache)
    database, server = database_settings(args.database_url)
    # A SIGTERM (a CI timeout) unwinds through the finally below, so the
    # throwaway server is removed.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    results = []
    try:
        for driver in drivers:
            for engine in engines:
                log = cache / f"django-{django_version()}-{engine}-{driver}.log"
                results.append(
                    run_suite(
                        tests_dir, engine=engine, driver=driver, database=database,
                        apps=apps, parallel=args.parallel, log=log, extra=extra,
                    )
                )  # fmt: skip
    finally:
        if server is not None:
            server.destroy()

    failed = False
    for driver in drivers:
        by_engine = {r["engine"]: r for r in results if r["driver"] == driver}
        mine = by_engine.get(ours)
        stock = by_engine.get("stock")
        if mine and stock:
            only_ours = sorted(set(mine["failures"]) - set(stock["failures"]))
            only_stock = sorted(set(stock["failures"]) - set(mine["failures"]))
            print(f"--- {driver}: {len(only_ours)} test(s) fail only with orca-db")
            for test in only_ours:
                print(f"    {test}")
            if only_stock:
                print(f"--- {driver}: {len(only_stock)} test(s) fail only with the stock backend")
                for test in only_stock:
                    print(f"    {test}")
            # A crashed or empty run of ours fails too, whatever it listed.
            crashed = mine["tests"] == 0 or (mine["exit"] != 0 and stock["exit"] == 0)
            failed |= bool(only_ours) or crashed
        else:
            failed |= any(r["exit"] != 0 or r["tests"] == 0 for r in by_engine.values())
    if args.report:
        args.report.write_text(json.dumps(results, indent=2) + "\n")
    for r in results:
        print(
            f"{r['engine']:6} {r['driver']:8} {r['tests']:6} tests "
            f"{len(r['failures']):4} failed {r['minutes']:5.1f} min"
        )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
