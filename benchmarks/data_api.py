"""The Data API engine against the psycopg engine, both through local
stand-ins for Aurora: per-query latency and client CPU, and what importing
boto3 costs a cold start.

- Latency: the ``aurora`` engine through the Aurora simulator (a wire
  protocol proxy) and the ``aurora_data_api`` engine through the local Data
  API endpoint, both in front of one throwaway PostgreSQL, each stand-in in
  its own process. The workloads of ``benchmarks/workloads.py`` alternate in
  small batches, so load from elsewhere hits both alike. Client CPU is the
  worker thread's CPU time (``time.thread_time``): the driver, Django, and
  for the Data API boto3 (serialising, signing, parsing) and this engine.
- Cold start: fresh interpreters, as a Lambda cold start runs them, time
  ``django.setup()``, the engine's first query (which imports boto3 and makes
  the client), and apart: ``import boto3``, the client's creation.

    python -m benchmarks.data_api [--quick] [--drivers psycopg,psycopg2]

Prints tables and writes benchmarks/results/data_api.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from typing import Any

from benchmarks import common

LATENCY_WORKLOADS = (
    "raw_select1",
    "raw_pk_fetch",
    "raw_insert",
    "orm_pk_fetch",
    "orm_insert",
    "orm_txn10",
)
ALIASES = {"aurora": common.AURORA_ENGINE, "data_api": "orca_db.backends.aurora_data_api"}


# ----- stand-ins, each in a process of its own ---------------------------------------


def start_standins(info: dict[str, Any]) -> tuple[list[subprocess.Popen], dict[str, Any]]:
    """The simulator and the endpoint in front of the server; their addresses."""
    port = _free_port()
    simulator = subprocess.Popen(
        [sys.executable, "-m", "orca_db.testing.simulator",
         "--upstream", f"127.0.0.1:{info['port']}", "--listen", f"127.0.0.1:{port}"],
        cwd=common.ROOT, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    endpoint = subprocess.Popen(
        [sys.executable, "-m", "orca_db.testing.data_api", "--upstream",
         f"127.0.0.1:{info['port']}", "--password", info["password"]],
        cwd=common.ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    environ = {}
    assert endpoint.stdout is not None
    while len(environ) < 3:
        line = endpoint.stdout.readline()
        if not line:
            raise RuntimeError("the Data API endpoint did not start")
        if line.startswith("export "):
            name, _, value = line[len("export ") :].strip().partition("=")
            environ[name] = value
    _wait_listening(port)
    return [simulator, endpoint], {"simulator_port": port, "environ": environ}


def _free_port() -> int:
    from orca_db.testing.postgres import free_port

    return free_port()


def _wait_listening(port: int, timeout: float = 30) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


def stop(processes: list[subprocess.Popen]) -> None:
    for process in processes:
        if process.poll() is None:
            process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# ----- the latency worker ------------------------------------------------------------


def worker(driver: str, iterations: int) -> None:
    info = common.worker_server_info()
    common.hide_psycopg3(driver)  # before anything imports psycopg
    from orca_db.testing.data_api import DEFAULT_CLUSTER_ARN, DEFAULT_SECRET_ARN

    aurora = common.database(common.AURORA_ENGINE, info, PORT=str(info["simulator_port"]))
    data_api = {
        "ENGINE": ALIASES["data_api"],
        "NAME": "postgres",
        "OPTIONS": {"aurora": {"cluster_arn": DEFAULT_CLUSTER_ARN, "secret": DEFAULT_SECRET_ARN}},
    }
    common.setup_django(driver, {"default": aurora, "data_api": data_api})
    from benchmarks import workloads

    ids = common.create_table("default")
    workloads.use_ids(ids)
    aliases = {"aurora": "default", "data_api": "data_api"}
    results: dict[str, Any] = {}
    for name in LATENCY_WORKLOADS:
        function = workloads.WORKLOADS[name]
        batch = max(1, workloads.BATCH[name] // 5)
        for alias in aliases.values():  # warm up: connections, caches, boto3
            for _ in range(batch):
                function(alias)
        wall: dict[str, list[float]] = {key: [] for key in aliases}
        cpu: dict[str, list[float]] = {key: [] for key in aliases}
        for _ in range(max(1, iterations // batch)):
            for key, alias in aliases.items():
                started, started_cpu = time.perf_counter(), time.thread_time()
                for _ in range(batch):
                    function(alias)
                wall[key].append((time.perf_counter() - started) / batch * 1000)
                cpu[key].append((time.thread_time() - started_cpu) / batch * 1000)
        results[name] = {
            key: {"wall_ms": common.summary(wall[key]), "cpu_ms": common.summary(cpu[key])}
            for key in aliases
        }
    common.emit({"driver": driver, "workloads": results})


# ----- cold start ------------------------------------------------------------------------

COLD_CHILD = r"""
import time
t0 = time.perf_counter()
import json, os, sys
info = json.loads(os.environ["ORCA_BENCH_SERVER"])
if sys.argv[1] == "data_api":
    database = {
        "ENGINE": "orca_db.backends.aurora_data_api", "NAME": "postgres",
        "OPTIONS": {"aurora": {"cluster_arn": info["cluster_arn"], "secret": info["secret"]}},
    }
else:  # the aurora engine, through the simulator
    database = {
        "ENGINE": "orca_db.backends.aurora", "NAME": "postgres", "USER": "postgres",
        "PASSWORD": info["password"], "HOST": "127.0.0.1", "PORT": str(info["simulator_port"]),
    }
import django
from django.conf import settings
settings.configure(
    DATABASES={"default": database}, INSTALLED_APPS=[], USE_TZ=True, SECRET_KEY="x",
)
django.setup()
t1 = time.perf_counter()
from django.db import connection
connection.ensure_connection()
t2 = time.perf_counter()
boto3_loaded = "boto3" in sys.modules
with connection.cursor() as cursor:
    cursor.execute("SELECT 1")
t3 = time.perf_counter()
with connection.cursor() as cursor:
    cursor.execute("SELECT 1")
t4 = time.perf_counter()
print(json.dumps({"setup": (t1 - t0) * 1000, "engine": (t2 - t1) * 1000,
                  "first_query": (t3 - t2) * 1000, "second_query": (t4 - t3) * 1000,
                  "boto3_before_first_query": boto3_loaded}))
"""

BOTO3_CHILD = r"""
import time, json
t0 = time.perf_counter()
import boto3
t1 = time.perf_counter()
from botocore.config import Config
client = boto3.session.Session().client("rds-data", region_name="us-east-1",
                                         config=Config(retries={"total_max_attempts": 1}))
t2 = time.perf_counter()
print(json.dumps({"import_boto3": (t1 - t0) * 1000, "make_client": (t2 - t1) * 1000}))
"""


def cold_start(info: dict[str, Any], environ: dict[str, str], runs: int) -> dict[str, Any]:
    from orca_db.testing.data_api import DEFAULT_CLUSTER_ARN, DEFAULT_SECRET_ARN

    env = {
        **os.environ,
        **environ,
        common.SERVER_ENV: json.dumps(
            {**info, "cluster_arn": DEFAULT_CLUSTER_ARN, "secret": DEFAULT_SECRET_ARN}
        ),
        "PYTHONPATH": str(common.ROOT),
    }
    samples: dict[str, dict[str, list[float]]] = {}
    programs = {
        "data_api": [COLD_CHILD, "data_api"],
        "aurora": [COLD_CHILD, "aurora"],
        "boto3": [BOTO3_CHILD],
    }
    for _ in range(runs):  # interleaved: load from elsewhere hits each alike
        for name, program in programs.items():
            result = subprocess.run(
                [sys.executable, "-c", *program],
                env=env,
                capture_output=True,
                text=True,
                timeout=120,
            )
            if result.returncode != 0:
                raise RuntimeError(result.stderr[-2000:])
            for key, value in json.loads(result.stdout.splitlines()[-1]).items():
                if isinstance(value, float):
                    samples.setdefault(name, {}).setdefault(key, []).append(value)
    return {
        name: {key: common.summary(values) for key, values in by_key.items()}
        for name, by_key in samples.items()
    }


# ----- the parent ------------------------------------------------------------------------


def main(argv: list[str] | None = None, server=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--drivers", default="psycopg,psycopg2")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--iterations", type=int, default=None)
    args = parser.parse_args(argv)
    iterations = args.iterations or (100 if args.quick else 1000)
    if args.worker:
        worker(args.worker, iterations)
        return 0
    own = server is None
    server = server or common.start_server()
    info = common.server_info(server)
    processes, standins = start_standins(info)
    try:
        info = {**info, "simulator_port": standins["simulator_port"]}
        latency = [
            common.run_worker(
                "benchmarks.data_api",
                ["--worker", driver, "--iterations", str(iterations)],
                info,
                timeout=3600,
                env=standins["environ"],
            )
            for driver in args.drivers.split(",")
        ]
        cold = cold_start(info, standins["environ"], 3 if args.quick else 15)
    finally:
        stop(processes)
        if own:
            server.destroy()
    print_tables(latency, cold)
    path = common.save(
        "data_api", {"iterations": iterations, "latency": latency, "cold_start": cold}
    )
    print(f"\nwritten to {path}")
    return 0


def print_tables(latency: list[dict], cold: dict[str, Any]) -> None:
    for result in latency:
        rows = []
        for name, by_alias in result["workloads"].items():
            aurora, data_api = by_alias["aurora"], by_alias["data_api"]
            rows.append([
                name,
                aurora["wall_ms"]["median"], data_api["wall_ms"]["median"],
                data_api["wall_ms"]["median"] / aurora["wall_ms"]["median"],
                aurora["cpu_ms"]["median"], data_api["cpu_ms"]["median"],
                data_api["cpu_ms"]["median"] / aurora["cpu_ms"]["median"],
            ])  # fmt: skip
        print(f"\nPer operation, {result['driver']} (medians, ms)")
        print(common.table(
            ["workload", "aurora wall", "data_api wall", "ratio",
             "aurora cpu", "data_api cpu", "ratio"], rows,
        ))  # fmt: skip
    print("\nCold start, fresh interpreters (medians, ms)")
    print(common.table(["process", "segment", "median", "q1", "q3"], [
        [name, key, value["median"], value["q1"], value["q3"]]
        for name, by_key in cold.items() for key, value in by_key.items()
    ]))  # fmt: skip


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
