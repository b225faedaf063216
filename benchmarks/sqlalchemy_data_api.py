"""SQLAlchemy over the RDS Data API (``postgresql+aurora_data_api``) against
``postgresql+psycopg`` with the ``orca_db`` plugin, both through local
stand-ins for Aurora: per-statement latency and client CPU, and the cold
start of a fresh process (with boto3).

- Per statement: the plugin engine through the Aurora simulator (a wire
  protocol proxy) and the Data API dialect through the local Data API
  endpoint, both in front of one throwaway PostgreSQL, each stand-in in a
  process of its own (its CPU is not counted). One worker process holds a
  connection of each engine and runs each operation in batches, the two
  engines alternating, so load from elsewhere hits both alike. Wall time
  (``time.perf_counter``) and client CPU (``time.process_time`` of the
  worker: SQLAlchemy, the plugin or the dialect, psycopg or boto3) per
  operation, medians of the batches. The Data API calls each operation
  makes are counted on the endpoint.
- Cold start: fresh interpreters (the two kinds alternate) doing
  ``import orca_db.sqlalchemy``, ``create_engine`` and a first query; the
  modules loaded (is Django among them? boto3?), and ``python -X importtime``
  self times summed by top-level package.

    python -m benchmarks.sqlalchemy_data_api [--quick] [--iterations N] [--runs N]

Prints tables (and this command) and writes
benchmarks/results/sqlalchemy_data_api.json. About 1.5 minutes by default on 2 loaded cores.
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import re
import subprocess
import sys
import time
from typing import Any

from benchmarks import common
from benchmarks.data_api import BOTO3_CHILD, start_standins, stop

ENGINES = ("psycopg", "data_api")
OPERATIONS = (
    "select1",  # autocommit SELECT 1 on a held connection
    "pk_fetch",  # autocommit SELECT of one row by primary key
    "insert_txn",  # begin + INSERT + commit on a held connection
    "connect_select1",  # engine.connect() (pool checkout) + autocommit SELECT 1 + return
    "dbapi_select1",  # the driver alone: SELECT 1 on the DB-API connection under "select1"
)
LABELS = {
    "select1": "autocommit SELECT 1",
    "pk_fetch": "autocommit pk fetch",
    "insert_txn": "begin + INSERT + commit",
    "connect_select1": "engine.connect() + SELECT 1",
    "dbapi_select1": "DB-API cursor SELECT 1 (driver alone)",
}
TABLE = "orca_bench_sa_item"
ROWS = 1000


# ----- engines (worker and parent) --------------------------------------------------------


def _register_dialect() -> None:
    """As the installed package's ``sqlalchemy.dialects`` entry point does
    (a checkout not installed lacks it)."""
    from sqlalchemy.dialects import registry

    registry.register(
        "postgresql.aurora_data_api", "orca_db.sqlalchemy.data_api", "AuroraDataApiDialect"
    )


def make_engine(kind: str, info: dict[str, Any]) -> Any:
    """The psycopg engine with the plugin (through the simulator), or the
    Data API dialect's (through the endpoint the environment points at)."""
    from sqlalchemy import URL, create_engine

    if kind == "psycopg":
        url = URL.create(
            "postgresql+psycopg",
            username="postgres",
            password=info["password"],
            host="127.0.0.1",
            port=info["simulator_port"],
            database="postgres",
        )
        return create_engine(url, plugins=["orca_db"], aurora={"deadline": 20})
    from orca_db.testing.data_api import DEFAULT_CLUSTER_ARN, DEFAULT_SECRET_ARN

    _register_dialect()
    aurora = {"cluster_arn": DEFAULT_CLUSTER_ARN, "secret": DEFAULT_SECRET_ARN, "deadline": 20}
    return create_engine("postgresql+aurora_data_api:///postgres", aurora=aurora)


def operations(engine: Any) -> tuple[dict[str, Any], Any]:
    """One callable per operation on ``engine``; and the held connections."""
    from sqlalchemy import text

    autocommit = engine.execution_options(isolation_level="AUTOCOMMIT")
    reads = autocommit.connect()
    writes = engine.connect()
    select1 = text("SELECT 1")
    fetch = text(f"SELECT id, name, value FROM {TABLE} WHERE id = :id")
    insert = text(f"INSERT INTO {TABLE} (name, value) VALUES (:name, :value)")
    counter = iter(range(10**9))

    def op_select1() -> None:
        reads.execute(select1).scalar_one()

    def op_pk_fetch() -> None:
        reads.execute(fetch, {"id": next(counter) % ROWS + 1}).one()

    def op_insert_txn() -> None:
        with writes.begin():
            writes.execute(insert, {"name": "x", "value": 1})

    def op_connect_select1() -> None:
        with autocommit.connect() as connection:
            connection.execute(select1).scalar_one()

    driver = reads.connection.dbapi_connection  # autocommit, as set by SQLAlchemy

    def op_dbapi_select1() -> None:
        cursor = driver.cursor()
        cursor.execute("SELECT 1")
        cursor.fetchall()
        cursor.close()

    ops = {
        "select1": op_select1,
        "pk_fetch": op_pk_fetch,
        "insert_txn": op_insert_txn,
        "connect_select1": op_connect_select1,
        "dbapi_select1": op_dbapi_select1,
    }
    return ops, (reads, writes)


def create_table(engine: Any) -> None:
    from sqlalchemy import text

    with engine.begin() as connection:
        connection.execute(text(f"DROP TABLE IF EXISTS {TABLE}"))
        connection.execute(
            text(f"CREATE TABLE {TABLE} (id serial PRIMARY KEY, name text, value integer)")
        )
        connection.execute(
            text(
                f"INSERT INTO {TABLE} (name, value)"
                f" SELECT 'item ' || i, i FROM generate_series(1, {ROWS}) i"
            )
        )


# ----- the latency worker ------------------------------------------------------------------


def worker(iterations: int, batch: int) -> None:
    info = common.worker_server_info()
    engines = {kind: make_engine(kind, info) for kind in ENGINES}
    create_table(engines["psycopg"])
    ops = {}
    held = []
    for name, engine in engines.items():
        ops[name], connections = operations(engine)
        held.extend(connections)
    results: dict[str, Any] = {}
    for operation in OPERATIONS:
        for name in ENGINES:  # warm up: connections, statement caches, boto3
            for _ in range(max(5, batch)):
                ops[name][operation]()
        wall: dict[str, list[float]] = {name: [] for name in ENGINES}
        cpu: dict[str, list[float]] = {name: [] for name in ENGINES}
        for round_ in range(max(1, iterations // batch)):
            order = ENGINES if round_ % 2 == 0 else ENGINES[::-1]
            for name in order:
                function = ops[name][operation]
                started, started_cpu = time.perf_counter(), time.process_time()
                for _ in range(batch):
                    function()
                wall[name].append((time.perf_counter() - started) / batch * 1000)
                cpu[name].append((time.process_time() - started_cpu) / batch * 1000)
        results[operation] = {
            name: {"wall_ms": common.summary(wall[name]), "cpu_ms": common.summary(cpu[name])}
            for name in ENGINES
        }
    for connection in held:
        connection.close()
    for engine in engines.values():
        engine.dispose()
    import sqlalchemy

    common.emit({"sqlalchemy": sqlalchemy.__version__, "operations": results})


# ----- Data API calls per operation, counted on the endpoint -------------------------------


def _endpoint_stats(endpoint: subprocess.Popen) -> dict[str, int]:
    assert endpoint.stdin is not None and endpoint.stdout is not None
    endpoint.stdin.write("stats\n")
    endpoint.stdin.flush()
    while True:
        line = endpoint.stdout.readline()
        if not line:
            raise RuntimeError("the Data API endpoint stopped")
        if line.startswith("{"):
            return json.loads(line)


def calls_per_operation(
    info: dict[str, Any], environ: dict[str, str], endpoint: subprocess.Popen, times: int = 10
) -> dict[str, float]:
    """Run in the parent, after the worker: the endpoint's ``calls``
    counter around ``times`` runs of each operation on the Data API engine."""
    saved = {name: os.environ.get(name) for name in environ}
    os.environ.update(environ)
    try:
        engine = make_engine("data_api", info)
        ops, held = operations(engine)
        counted = {}
        for operation in OPERATIONS:
            ops[operation]()  # warm
            before = _endpoint_stats(endpoint)["calls"]
            for _ in range(times):
                ops[operation]()
            counted[operation] = (_endpoint_stats(endpoint)["calls"] - before) / times
        for connection in held:
            connection.close()
        engine.dispose()
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    return counted


# ----- cold start ----------------------------------------------------------------------------

COLD_CHILD = r"""
import time
t0 = time.perf_counter()
import json, os, sys
kind = sys.argv[1]
info = json.loads(os.environ["ORCA_BENCH_SERVER"])
import orca_db.sqlalchemy
from sqlalchemy import URL, create_engine, text
t1 = time.perf_counter()
if kind == "data_api":
    from sqlalchemy.exc import NoSuchModuleError
    aurora = {"cluster_arn": info["cluster_arn"], "secret": info["secret"], "deadline": 20}
    try:
        engine = create_engine("postgresql+aurora_data_api:///postgres", aurora=aurora)
    except NoSuchModuleError:  # a checkout not installed: no entry point
        from sqlalchemy.dialects import registry
        registry.register("postgresql.aurora_data_api", "orca_db.sqlalchemy.data_api",
                          "AuroraDataApiDialect")
        engine = create_engine("postgresql+aurora_data_api:///postgres", aurora=aurora)
else:
    engine = create_engine(
        URL.create("postgresql+psycopg", username="postgres", password=info["password"],
                   host="127.0.0.1", port=info["simulator_port"], database="postgres"),
        plugins=["orca_db"], aurora={"deadline": 20},
    )
t2 = time.perf_counter()
with engine.connect() as connection:
    connection.execute(text("SELECT 1")).scalar_one()
t3 = time.perf_counter()
with engine.connect() as connection:
    connection.execute(text("SELECT 1")).scalar_one()
t4 = time.perf_counter()
top = {name.partition(".")[0] for name in sys.modules}
print(json.dumps({
    "import_ms": (t1 - t0) * 1000, "create_engine_ms": (t2 - t1) * 1000,
    "first_query_ms": (t3 - t2) * 1000, "second_query_ms": (t4 - t3) * 1000,
    "to_first_result_ms": (t3 - t0) * 1000, "modules": len(sys.modules),
    "django": "django" in top, "boto3": "boto3" in top, "psycopg": "psycopg" in top,
}))
"""

_IMPORTTIME = re.compile(r"^import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)")
PACKAGES = ("sqlalchemy", "psycopg", "boto3", "botocore", "urllib3", "orca_db", "django")


def _cold_child(kind: str, env: dict[str, str], importtime: bool) -> tuple[dict, str]:
    args = [sys.executable, *(["-X", "importtime"] if importtime else []), "-c", COLD_CHILD, kind]
    started = time.perf_counter()
    result = subprocess.run(
        args, cwd=common.ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    wall = (time.perf_counter() - started) * 1000
    if result.returncode != 0:
        raise RuntimeError(f"cold start child {kind} failed:\n{result.stderr[-3000:]}")
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    figures["process_wall_ms"] = wall
    return figures, result.stderr


def _by_package(stderr: str) -> dict[str, float]:
    """``-X importtime`` self times (ms) summed by top-level package."""
    totals: dict[str, float] = {}
    for line in stderr.splitlines():
        match = _IMPORTTIME.match(line)
        if match:
            top = match.group(4).partition(".")[0]
            key = top if top in PACKAGES else "other"
            totals[key] = totals.get(key, 0.0) + int(match.group(1)) / 1000
            totals["total"] = totals.get("total", 0.0) + int(match.group(1)) / 1000
    return totals


def cold_start(
    info: dict[str, Any], environ: dict[str, str], runs: int, importtime_runs: int
) -> dict[str, Any]:
    from orca_db.testing.data_api import DEFAULT_CLUSTER_ARN, DEFAULT_SECRET_ARN

    env = {
        **os.environ,
        **environ,
        common.SERVER_ENV: json.dumps(
            {**info, "cluster_arn": DEFAULT_CLUSTER_ARN, "secret": DEFAULT_SECRET_ARN}
        ),
        "PYTHONHASHSEED": "0",
    }
    samples: dict[str, list[dict]] = {kind: [] for kind in ENGINES}
    boto3: list[dict[str, float]] = []
    for run in range(runs):  # alternating: load from elsewhere hits each alike
        for kind in ENGINES if run % 2 == 0 else ENGINES[::-1]:
            samples[kind].append(_cold_child(kind, env, False)[0])
        boto3.append(_boto3_alone(env))
    packages: dict[str, dict[str, list[float]]] = {kind: {} for kind in ENGINES}
    for _ in range(importtime_runs):
        for kind in ENGINES:
            for package, ms in _by_package(_cold_child(kind, env, True)[1]).items():
                packages[kind].setdefault(package, []).append(ms)
    keys = (
        "process_wall_ms",
        "import_ms",
        "create_engine_ms",
        "first_query_ms",
        "second_query_ms",
        "to_first_result_ms",
        "modules",
    )
    return {
        "boto3_alone_ms": {
            key: common.summary([s[key] for s in boto3]) for key in ("import_boto3", "make_client")
        },
        **{
            kind: {
                "ms": {key: common.summary([s[key] for s in values]) for key in keys},
                "django_loaded": any(s["django"] for s in values),
                "boto3_loaded": any(s["boto3"] for s in values),
                "psycopg_loaded": any(s["psycopg"] for s in values),
                "importtime_self_ms": {
                    package: common.summary(v)["median"] for package, v in packages[kind].items()
                },
            }
            for kind, values in samples.items()
        },
    }


def _boto3_alone(env: dict[str, str]) -> dict[str, float]:
    """``import boto3`` and making the ``rds-data`` client, in a fresh process."""
    result = subprocess.run(
        [sys.executable, "-c", BOTO3_CHILD],
        cwd=common.ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


# ----- the parent ------------------------------------------------------------------------------


def main(argv: list[str] | None = None, server=None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    parser.add_argument("--iterations", type=int, help="operations per engine (default 1000)")
    parser.add_argument("--batch", type=int, default=10, help="operations per timed batch")
    parser.add_argument("--runs", type=int, help="fresh processes per kind (default 15)")
    parser.add_argument("--importtime-runs", type=int, help="-X importtime runs per kind")
    parser.add_argument("--no-save", action="store_true", help="do not write the results file")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(argv)
    iterations = args.iterations or (100 if args.quick else 1000)
    batch = max(1, min(args.batch, iterations))
    if args.worker:
        worker(iterations, batch)
        return {}
    runs = args.runs or (3 if args.quick else 15)
    importtime_runs = args.importtime_runs or (1 if args.quick else 3)
    # As benchmarks.coldstart: a checkout would otherwise compile orca_db in
    # each fresh process.
    compileall.compile_dir(common.ROOT / "orca_db", quiet=1)
    own = server is None
    server = server or common.start_server()
    info = common.server_info(server)
    processes, standins = start_standins(info)
    try:
        info = {**info, "simulator_port": standins["simulator_port"]}
        latency = common.run_worker(
            "benchmarks.sqlalchemy_data_api",
            ["--worker", "--iterations", str(iterations), "--batch", str(batch)],
            info,
            timeout=1800,
            env=standins["environ"],
        )
        calls = calls_per_operation(info, standins["environ"], processes[1])
        cold = cold_start(info, standins["environ"], runs, importtime_runs)
    finally:
        stop(processes)
        if own:
            server.destroy()
    data = {
        "command": " ".join(["python -m benchmarks.sqlalchemy_data_api", *argv]),
        "iterations": iterations,
        "batch": batch,
        "runs": runs,
        "sqlalchemy": latency["sqlalchemy"],
        "latency": latency["operations"],
        "data_api_calls": calls,
        "cold_start": cold,
    }
    print_tables(data)
    if not args.no_save:
        print(f"\n-> {common.save('sqlalchemy_data_api', data)}")
    return data


def print_tables(data: dict[str, Any]) -> None:
    print(f"$ {data['command']}")
    print(
        f"\nPer operation, SQLAlchemy {data['sqlalchemy']}, {data['iterations']} each in batches "
        f"of {data['batch']}, engines alternating (median ms; client CPU = process_time "
        "of the client process)"
    )
    rows = []
    for operation in OPERATIONS:
        by = data["latency"][operation]
        p, d = by["psycopg"], by["data_api"]
        rows.append([
            LABELS[operation],
            p["wall_ms"]["median"], d["wall_ms"]["median"],
            d["wall_ms"]["median"] / p["wall_ms"]["median"],
            p["cpu_ms"]["median"], d["cpu_ms"]["median"],
            d["cpu_ms"]["median"] / p["cpu_ms"]["median"],
            data["data_api_calls"][operation],
        ])  # fmt: skip
    print(common.table(
        ["operation", "psycopg+plugin wall", "data_api wall", "x",
         "psycopg+plugin cpu", "data_api cpu", "x", "Data API calls"], rows,
    ))  # fmt: skip
    cold = data["cold_start"]
    print(
        f"\nCold start: fresh process, import orca_db.sqlalchemy + create_engine + first "
        f"query ({data['runs']} each, alternating; median ms)"
    )
    keys = [k for k in cold["psycopg"]["ms"] if k != "modules"]
    rows = [
        [key, cold["psycopg"]["ms"][key]["median"], cold["data_api"]["ms"][key]["median"]]
        for key in keys
    ]
    rows.append(
        [
            "modules loaded",
            cold["psycopg"]["ms"]["modules"]["median"],
            cold["data_api"]["ms"]["modules"]["median"],
        ]
    )
    for flag in ("django_loaded", "boto3_loaded", "psycopg_loaded"):
        rows.append([flag, cold["psycopg"][flag], cold["data_api"][flag]])
    packages = sorted(
        set(cold["psycopg"]["importtime_self_ms"]) | set(cold["data_api"]["importtime_self_ms"]),
        key=lambda p: (p == "total", p == "other", p),
    )
    for package in packages:
        rows.append([
            f"-X importtime self ms: {package}",
            cold["psycopg"]["importtime_self_ms"].get(package, 0.0),
            cold["data_api"]["importtime_self_ms"].get(package, 0.0),
        ])  # fmt: skip
    print(common.table(["", "psycopg+plugin", "data_api"], rows))
    alone = cold["boto3_alone_ms"]
    print(
        f"boto3 alone, fresh process (median ms): import boto3 "
        f"{alone['import_boto3']['median']:.0f}, rds-data client "
        f"{alone['make_client']['median']:.0f}"
    )


if __name__ == "__main__":
    main(sys.argv[1:])
