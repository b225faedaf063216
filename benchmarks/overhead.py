"""Per-query overhead, wall clock: the same workloads through Django's stock
PostgreSQL backend and through ``orca_db.backends.aurora``, two aliases on
one server, interleaved batch by batch (the order alternating), reported as
the median and quartiles of the per-batch ratios aurora/stock.

    python -m benchmarks.overhead [--quick] [--batches N] [--drivers psycopg,psycopg2]
"""

from __future__ import annotations

import argparse
import gc
import sys
import time

from benchmarks import common


def worker(driver: str, batches: int, deadline: float) -> dict:
    info = common.worker_server_info()
    common.setup_django(
        driver,
        {
            "default": common.database(common.STOCK_ENGINE, info),
            "stock": common.database(common.STOCK_ENGINE, info),
            "aurora": common.database(common.AURORA_ENGINE, info),
        },
    )
    from benchmarks import workloads

    workloads.use_ids(common.create_table())
    drivers = {alias: common.driver_in_use(alias) for alias in ("stock", "aurora")}
    per_query: dict[str, dict[str, list[float]]] = {
        name: {"stock": [], "aurora": []} for name in workloads.WORKLOADS
    }
    ratios: dict[str, list[float]] = {name: [] for name in workloads.WORKLOADS}
    # Warm up both paths (statement caches, lazily built classes).
    for function in workloads.WORKLOADS.values():
        for alias in ("stock", "aurora"):
            for _ in range(20):
                function(alias)
    stop_at = time.monotonic() + deadline
    done = 0
    for batch in range(batches):
        if time.monotonic() > stop_at:
            break
        order = ("stock", "aurora") if batch % 2 == 0 else ("aurora", "stock")
        for name, function in workloads.WORKLOADS.items():
            n = workloads.BATCH[name]
            elapsed = {}
            gc.collect()
            gc.disable()
            try:
                for alias in order:
                    start = time.perf_counter()
                    for _ in range(n):
                        function(alias)
                    elapsed[alias] = time.perf_counter() - start
            finally:
                gc.enable()
            for alias, seconds in elapsed.items():
                per_query[name][alias].append(seconds / n / workloads.STATEMENTS[name] * 1e6)
            ratios[name].append(elapsed["aurora"] / elapsed["stock"])
        done += 1
    return {
        "driver": driver,
        "drivers_in_use": drivers,
        "batches": done,
        "iterations_per_batch": workloads.BATCH,
        "statements_per_iteration": workloads.STATEMENTS,
        "workloads": {
            name: {
                "ratio": common.summary(ratios[name]),
                "us_per_statement": {
                    alias: common.summary(values) for alias, values in per_query[name].items()
                },
            }
            for name in workloads.WORKLOADS
        },
    }


def main(argv: list[str] | None = None, server=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    parser.add_argument("--batches", type=int, help="batches per driver")
    parser.add_argument("--drivers", default=",".join(common.DRIVERS))
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--deadline", type=float, default=300, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        common.emit(worker(args.worker, args.batches, args.deadline))
        return {}

    batches = args.batches or (30 if args.quick else 200)
    deadline = 12 if args.quick else 240
    own_server = server is None
    server = server or common.start_server()
    try:
        results = {}
        for driver in args.drivers.split(","):
            results[driver] = common.run_worker(
                "benchmarks.overhead",
                ["--worker", driver, "--batches", str(batches), "--deadline", str(deadline)],
                common.server_info(server),
                timeout=deadline + 120,
            )
    finally:
        if own_server:
            server.destroy()
    rows = []
    for driver, result in results.items():
        for name, figures in result["workloads"].items():
            ratio = figures["ratio"]
            us = figures["us_per_statement"]
            rows.append(
                [
                    driver,
                    name,
                    us["stock"]["median"],
                    us["aurora"]["median"],
                    ratio["median"],
                    f"{ratio['q1']:.3f}-{ratio['q3']:.3f}",
                    result["batches"],
                ]
            )
    print("Per-query overhead (wall clock; µs per statement, ratio aurora/stock per batch)")
    print(
        common.table(
            ["driver", "workload", "stock µs", "aurora µs", "ratio", "IQR", "batches"], rows
        )
    )
    data = {"quick": args.quick, "results": results}
    path = common.save("overhead", data)
    print(f"-> {path}")
    return data


if __name__ == "__main__":
    main(sys.argv[1:])
