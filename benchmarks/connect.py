"""Connection set-up cost with ``CONN_MAX_AGE=0`` (one connection per
request): connect, ``SELECT 1``, close, through the stock backend and the
aurora one, interleaved batch by batch; ratio aurora/stock per batch.

    python -m benchmarks.connect [--quick] [--batches N] [--drivers psycopg,psycopg2]
"""

from __future__ import annotations

import argparse
import gc
import sys
import time

from benchmarks import common

REQUESTS_PER_BATCH = 5


def worker(driver: str, batches: int, deadline: float) -> dict:
    info = common.worker_server_info()
    common.setup_django(
        driver,
        {
            alias: common.database(engine, info, CONN_MAX_AGE=0)
            for alias, engine in (
                ("default", common.STOCK_ENGINE),
                ("stock", common.STOCK_ENGINE),
                ("aurora", common.AURORA_ENGINE),
            )
        },
    )
    from benchmarks.workloads import request_select1

    for alias in ("stock", "aurora"):
        for _ in range(3):
            request_select1(alias)
    ms: dict[str, list[float]] = {"stock": [], "aurora": []}
    ratios = []
    stop_at = time.monotonic() + deadline
    for batch in range(batches):
        if time.monotonic() > stop_at:
            break
        order = ("stock", "aurora") if batch % 2 == 0 else ("aurora", "stock")
        elapsed = {}
        gc.collect()
        gc.disable()
        try:
            for alias in order:
                start = time.perf_counter()
                for _ in range(REQUESTS_PER_BATCH):
                    request_select1(alias)
                elapsed[alias] = time.perf_counter() - start
        finally:
            gc.enable()
        for alias, seconds in elapsed.items():
            ms[alias].append(seconds / REQUESTS_PER_BATCH * 1000)
        ratios.append(elapsed["aurora"] / elapsed["stock"])
    return {
        "driver": driver,
        "drivers_in_use": common.driver_in_use("aurora"),
        "batches": len(ratios),
        "requests_per_batch": REQUESTS_PER_BATCH,
        "ms_per_request": {alias: common.summary(values) for alias, values in ms.items()},
        "ratio": common.summary(ratios),
    }


def main(argv: list[str] | None = None, server=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    parser.add_argument("--batches", type=int, help="batches per driver")
    parser.add_argument("--drivers", default=",".join(common.DRIVERS))
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--deadline", type=float, default=120, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        common.emit(worker(args.worker, args.batches, args.deadline))
        return {}

    batches = args.batches or (10 if args.quick else 60)
    deadline = 15 if args.quick else 120
    own_server = server is None
    server = server or common.start_server()
    try:
        results = {
            driver: common.run_worker(
                "benchmarks.connect",
                ["--worker", driver, "--batches", str(batches), "--deadline", str(deadline)],
                common.server_info(server),
                timeout=deadline + 120,
            )
            for driver in args.drivers.split(",")
        }
    finally:
        if own_server:
            server.destroy()
    rows = [
        [
            driver,
            result["ms_per_request"]["stock"]["median"],
            result["ms_per_request"]["aurora"]["median"],
            result["ratio"]["median"],
            f"{result['ratio']['q1']:.3f}-{result['ratio']['q3']:.3f}",
            result["batches"],
        ]
        for driver, result in results.items()
    ]
    print("Connection set-up, CONN_MAX_AGE=0 (ms per request: connect + SELECT 1 + close)")
    print(common.table(["driver", "stock ms", "aurora ms", "ratio", "IQR", "batches"], rows))
    data = {"quick": args.quick, "results": results}
    path = common.save("connect", data)
    print(f"-> {path}")
    return data


if __name__ == "__main__":
    main(sys.argv[1:])
