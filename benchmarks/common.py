"""What every benchmark shares: the throwaway server, Django set up in a
worker process with one alias per backend, statistics, tables and results.

A benchmark runs as a parent (starts the server, launches workers, prints
and saves) and workers (``python -m benchmarks.<name> --worker ...``), one per
driver: hiding psycopg 3 only works in a process that has not loaded it.
"""

from __future__ import annotations

import collections
import contextlib
import gc
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
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


# ----- callgrind: instructions per statement ----------------------------------
#
# The method is described in benchmarks/instructions.py's docstring: a worker
# under ``valgrind --tool=callgrind --dump-before=ctermid`` closes a segment
# with each ``os.ctermid()``; callgrind writes one profile (dump) per segment.

#: The environment variable whose length changes the heap's layout.
LAYOUT_PAD = "ORCA_BENCH_LAYOUT_PAD"

_TOTAL = re.compile(r"^(?:summary|totals): (\d+)", re.MULTILINE)


@dataclass(frozen=True)
class Callgrind:
    """A child's command-line ``prefix`` that runs it under callgrind, and
    its dumps in ``directory`` once it has run."""

    directory: Path
    separate_threads: bool

    @property
    def prefix(self) -> list[str]:
        return [
            "valgrind",
            "--tool=callgrind",
            "--dump-before=ctermid",
            *(["--separate-threads=yes"] if self.separate_threads else []),
            f"--callgrind-out-file={self.directory}/cg.out",
        ]

    def totals(self) -> list[int]:
        """Each dump's instructions, in dump order (``cg.out.<dump>``). With
        ``separate_threads``, the main thread's alone (``cg.out.<dump>-01``):
        other threads run on their own clock, and counted they would land in
        whichever segment was running."""
        files = sorted(
            self.directory.glob("cg.out.*-01" if self.separate_threads else "cg.out.*"),
            key=lambda p: int(p.name.split(".")[-1].split("-")[0]),
        )
        totals = []
        for path in files:
            match = _TOTAL.search(path.read_text(errors="replace"))
            totals.append(int(match.group(1)) if match else 0)
        return totals


@contextlib.contextmanager
def callgrind(*, separate_threads: bool = False) -> Iterator[Callgrind]:
    """A :class:`Callgrind` whose directory is removed afterwards."""
    directory = Path(tempfile.mkdtemp(prefix="orca-bench-cg-"))
    try:
        yield Callgrind(directory, separate_threads)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def run_under_callgrind(
    module: str,
    args: list[str],
    info: dict[str, Any],
    *,
    layout: int,
    timeout: float,
    separate_threads: bool = False,
    python: str | None = None,
) -> tuple[dict[str, Any], list[int]]:
    """:func:`run_worker` under callgrind, in heap layout number ``layout``
    (a padding variable of another length): its result and each dump's
    instructions."""
    with callgrind(separate_threads=separate_threads) as cg:
        result = run_worker(
            module,
            args,
            info,
            timeout=timeout,
            prefix=cg.prefix,
            env={LAYOUT_PAD: "x" * (97 * layout)},
            python=python,
        )
        return result, cg.totals()


def run_segments(workloads: Any, targets: dict[str, Any], iterations: int, reps: int) -> list:
    """In a worker under callgrind: one segment per (rep, workload, alias),
    each ``function(targets[alias])`` N times, then ``os.ctermid()``; the
    order of the aliases rotates from rep to rep. Ends the set-up segment
    first and turns garbage collection off (a collection that happens to
    fall in one segment and not another was most of the run-to-run noise).
    Returns ``[workload, alias, N]`` per segment, in order."""
    aliases = list(targets)
    order = []
    gc.collect()
    gc.disable()
    os.ctermid()  # ends the set-up segment
    for rep in range(reps):
        for name, function in workloads.WORKLOADS.items():
            n = iterations if workloads.STATEMENTS[name] == 1 else max(1, iterations // 10)
            shift = rep % len(aliases)
            for alias in aliases[shift:] + aliases[:shift]:
                target = targets[alias]
                for _ in range(n):
                    function(target)
                os.ctermid()
                order.append([name, alias, n])
    return order


def per_statement(segments: list, totals: list[int]) -> dict[str, dict[str, list[float]]]:
    """Instructions per statement of one worker's segments (as
    :func:`run_segments` listed them), per workload and alias."""
    # Dump 1 holds the set-up; dump k+2 the k-th measured segment.
    measured = totals[1 : 1 + len(segments)]
    per: dict[str, dict[str, list[float]]] = collections.defaultdict(
        lambda: collections.defaultdict(list)
    )
    for (name, alias, n), total in zip(segments, measured, strict=True):
        per[name][alias].append(total / n / statements(name))
    return per


class AcrossLayouts:
    """Instructions per statement over several heap layouts: every value
    per workload and alias, and in each layout each alias's median minus
    the stock one's (the spread of the "extra" is noise)."""

    def __init__(self) -> None:
        self.values: dict[str, dict[str, list[float]]] = collections.defaultdict(
            lambda: collections.defaultdict(list)
        )
        self.extra_per_layout: dict[str, dict[str, list[float]]] = collections.defaultdict(
            lambda: collections.defaultdict(list)
        )

    def add(self, layout: dict[str, dict[str, list[float]]]) -> None:
        """One layout's :func:`per_statement`."""
        for name, by_alias in layout.items():
            stock = summary(by_alias["stock"])["median"]
            for alias, values in by_alias.items():
                self.values[name][alias].extend(values)
                if alias != "stock":
                    self.extra_per_layout[name][alias].append(summary(values)["median"] - stock)

    def figures(self) -> dict[str, dict[str, Any]]:
        """Per workload: each alias's summary, and for the others their
        ratio to stock and extra instructions per statement (medians)."""
        out = {}
        for name, by_alias in self.values.items():
            figures = {alias: summary(values) for alias, values in by_alias.items()}
            stock = figures["stock"]["median"]
            out[name] = {
                "instructions": figures,
                "ratio": {a: f["median"] / stock for a, f in figures.items() if a != "stock"},
                "extra_per_statement": {
                    a: f["median"] - stock for a, f in figures.items() if a != "stock"
                },
                "extra_per_layout": self.extra_per_layout[name],
            }
        return out


# ----- call counts: where the extra instructions go ---------------------------


def _call_key(frame, event: str, arg) -> str:
    if event == "c_call":
        module = getattr(arg, "__module__", None) or type(getattr(arg, "__self__", None)).__name__
        return f"[C] {module}.{arg.__qualname__}"
    code = frame.f_code
    filename = code.co_filename
    root = str(ROOT)
    if filename.startswith(root):
        filename = filename[len(root) + 1 :]
    elif "site-packages/" in filename:
        filename = filename.split("site-packages/", 1)[1]
    return f"{filename}:{code.co_qualname}"


def count_calls(
    function: Callable[[Any], Any], target: Any, iterations: int
) -> collections.Counter:
    """The Python and C functions ``function(target)`` calls, counted over
    ``iterations`` calls (``sys.setprofile``)."""
    counter: collections.Counter = collections.Counter()

    def profile(frame, event, arg):
        if event in ("call", "c_call"):
            counter[_call_key(frame, event, arg)] += 1

    sys.setprofile(profile)
    try:
        for _ in range(iterations):
            function(target)
    finally:
        sys.setprofile(None)
    return counter


def extra_calls(stock: collections.Counter, other: collections.Counter, per: int) -> dict:
    """Calls per statement (``per`` statements) that ``other`` makes more
    (or fewer) of than ``stock``, the largest differences first."""
    extra = {
        key: (other[key] - stock[key]) / per
        for key in set(stock) | set(other)
        if other[key] != stock[key]
    }
    return dict(sorted(extra.items(), key=lambda kv: -abs(kv[1])))


def print_extra_calls(calls: dict[str, Any], path: str) -> None:
    """Per driver and workload, the first 12 of :func:`extra_calls` on
    ``path`` (e.g. "the aurora path")."""
    for driver, result in calls.items():
        print(f"\nExtra calls per statement on {path} ({driver}):")
        for name, figures in result["workloads"].items():
            listed = ", ".join(
                f"{key} {count:+g}" for key, count in list(figures["difference"].items())[:12]
            )
            print(f"  {name}: {listed or '(none)'}")


# ----- run options ------------------------------------------------------------


def add_run_options(parser: Any, target: str) -> None:
    """The options of a run over drivers, segments and heap layouts
    (``target``: what a segment runs on, "alias" or "engine")."""
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    parser.add_argument("--drivers", help="default: both (psycopg alone with --quick)")
    parser.add_argument("--iterations", type=int, help="iterations per segment (simple workloads)")
    parser.add_argument("--reps", type=int, help=f"segments per workload and {target}")
    parser.add_argument(
        "--layouts",
        type=int,
        help="worker processes, each in another heap layout (default 3; 1 with --quick)",
    )


def run_settings(args: Any) -> tuple[int, int, list[str], int]:
    """``(iterations, reps, drivers, layouts)`` from :func:`add_run_options`'
    options, the quick run's where not given."""
    iterations = args.iterations or (10 if args.quick else 100)
    reps = args.reps or (1 if args.quick else 4)
    drivers = args.drivers or ("psycopg" if args.quick else ",".join(DRIVERS))
    layouts = args.layouts or (1 if args.quick else 3)
    return iterations, reps, drivers.split(","), layouts


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
