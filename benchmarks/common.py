"""What every benchmark shares: the throwaway server, Django set up in a
worker process with one alias per backend, statistics, tables and results.

A benchmark runs as a parent (starts the server, launches workers, prints
and saves) and workers (``python -m benchmarks.<name> --worker ...``), one per
driver: hiding psycopg 3 only works in a process that has not loaded it.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"
DRIVERS = ("psycopg", "psycopg2")
STOCK_ENGINE = "django.db.backends.postgresql"
AURORA_ENGINE = "orca_db.backends.aurora"
#: Where a worker finds the server the parent started (JSON).
SERVER_ENV = "ORCA_BENCH_SERVER"


# ----- the server -------------------------------------------------------------


def start_server():
    """A throwaway PostgreSQL for this run (removed at exit)."""
    sys.path.insert(0, str(ROOT))
    from orca_db.testing.postgres import PostgresServer

    return PostgresServer().start()


def server_info(server) -> dict[str, Any]:
    return {"port": server.port, "password": server.password, "base": str(server.base)}


def database(engine: str, info: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "ENGINE": engine,
        "NAME": "postgres",
        "USER": "postgres",
        "PASSWORD": info["password"],
        "HOST": "127.0.0.1",
        "PORT": str(info["port"]),
        **extra,
    }


def statements(workload: str) -> int:
    """Statements one iteration of ``workload`` sends (see workloads.py)."""
    return 10 if workload.endswith("txn10") else 1


# ----- workers ----------------------------------------------------------------


def hide_psycopg3(driver: str) -> None:
    """Make Django use psycopg2: must run before anything imports psycopg."""
    if driver not in DRIVERS:
        raise SystemExit(f"--driver must be one of {DRIVERS}, not {driver!r}")
    if driver == "psycopg2":
        if "psycopg" in sys.modules and sys.modules["psycopg"] is not None:
            raise RuntimeError("psycopg 3 is already imported; cannot hide it")
        sys.modules["psycopg"] = None  # type: ignore[assignment]


def setup_django(driver: str, databases: dict[str, dict[str, Any]]) -> None:
    """Configure Django in this (worker) process with ``databases``."""
    hide_psycopg3(driver)
    import django
    from django.conf import settings

    settings.configure(
        DEBUG=False,
        USE_TZ=True,
        SECRET_KEY="orca-db-benchmarks",
        INSTALLED_APPS=["benchmarks.benchapp"],
        DATABASES=databases,
        DEFAULT_AUTO_FIELD="django.db.models.BigAutoField",
        LOGGING_CONFIG=None,
    )
    django.setup()


def create_table(alias: str = "default", rows: int = 1000) -> list[int]:
    """(Re)create the benchmark table with ``rows`` rows; their ids."""
    from django.db import connections

    from benchmarks.benchapp.models import Item

    connection = connections[alias]
    with connection.cursor() as cursor:
        cursor.execute("DROP TABLE IF EXISTS benchapp_item")
    with connection.schema_editor() as editor:
        editor.create_model(Item)
    Item.objects.using(alias).bulk_create(Item(name=f"item {i}", value=i) for i in range(rows))
    return list(Item.objects.using(alias).order_by("pk").values_list("pk", flat=True))


def driver_in_use(alias: str = "default") -> str:
    from django.db import connections

    connection = connections[alias]
    connection.ensure_connection()
    return type(connection.connection).__module__.split(".")[0]


def run_worker(
    module: str,
    args: list[str],
    info: dict[str, Any] | None,
    *,
    timeout: float,
    prefix: list[str] | None = None,
    env: dict[str, str] | None = None,
    python: str | None = None,
) -> dict[str, Any]:
    """Run ``python -m module args`` (under ``prefix``, e.g. valgrind) and
    return the JSON object it prints on its last stdout line. ``python``:
    another interpreter (a virtualenv's), this one by default."""
    full_env = {**os.environ, "PYTHONHASHSEED": "0", **(env or {})}
    if info is not None:
        full_env[SERVER_ENV] = json.dumps(info)
    result = subprocess.run(
        [*(prefix or []), python or sys.executable, "-m", module, *args],
        cwd=ROOT,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"worker {module} {' '.join(args)} failed ({result.returncode}):\n"
            f"{result.stderr[-3000:]}"
        )
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    if not lines:
        raise RuntimeError(f"worker {module} printed no result:\n{result.stdout[-2000:]}")
    return json.loads(lines[-1])


def worker_server_info() -> dict[str, Any]:
    raw = os.environ.get(SERVER_ENV)
    if not raw:
        raise SystemExit(f"{SERVER_ENV} is not set: run this through its parent script")
    return json.loads(raw)


def emit(result: dict[str, Any]) -> None:
    """A worker's answer to its parent: one JSON line on stdout."""
    print(json.dumps(result), flush=True)


# ----- statistics and output --------------------------------------------------


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    position = (len(ordered) - 1) * q
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def summary(values: list[float]) -> dict[str, float]:
    """Median and quartiles (the spread the tables show), min, max, n."""
    if not values:
        return {"n": 0}
    return {
        "n": len(values),
        "median": statistics.median(values),
        "q1": quantile(values, 0.25),
        "q3": quantile(values, 0.75),
        "iqr": quantile(values, 0.75) - quantile(values, 0.25),
        "min": min(values),
        "max": max(values),
        "mean": statistics.fmean(values),
    }


def table(headers: list[str], rows: list[list[Any]]) -> str:
    cells = [[str(h) for h in headers]] + [[_cell(v) for v in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = []
    for n, row in enumerate(cells):
        lines.append(
            "  ".join(c.rjust(w) if n else c.ljust(w) for c, w in zip(row, widths, strict=True))
        )
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1000 else f"{value:.0f}"
    return str(value)


def machine() -> dict[str, Any]:
    """The machine and software the figures were measured on."""
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions: dict[str, str | None] = {}
    for name, distributions in (
        ("django", ["django"]),
        ("psycopg", ["psycopg"]),
        ("psycopg2", ["psycopg2-binary", "psycopg2"]),
        ("tenacity", ["tenacity"]),
    ):
        versions[name] = None
        for distribution in distributions:
            with contextlib.suppress(PackageNotFoundError):
                versions[name] = version(distribution)
                break
    postgres = subprocess.run(["postgres", "--version"], capture_output=True, text=True)
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "loadavg_at_start": os.getloadavg(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "postgres": postgres.stdout.strip() or None,
        **versions,
    }


def save(name: str, data: dict[str, Any]) -> Path:
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    payload = {
        "benchmark": name,
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": machine(),
        **data,
    }
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    return path
