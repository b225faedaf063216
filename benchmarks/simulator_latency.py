#!/usr/bin/env python
"""What the Aurora simulator adds to a ``SELECT 1`` round trip.

Starts a throwaway PostgreSQL, then times ``SELECT 1`` straight to it and
through the simulator, interleaved (one of each path, repeated) so that
load from elsewhere on the machine hits every path alike. The simulator
runs in this process (a thread, as the pytest fixture runs it) on uvloop
(when installed) and on asyncio's own loop, and with ``--cli`` also as its
own process (as the command line runs it). Also times how long a connect
held by a pause takes to complete after resume().

    python benchmarks/simulator_latency.py [--iterations 5000] [--driver psycopg2] [--cli]

Prints a table and writes benchmarks/results/simulator_latency.json. Not
run by the test suite.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from orca_db.testing.postgres import PostgresServer
from orca_db.testing.simulator import AuroraSimulator

RESULTS = Path(__file__).resolve().parent / "results" / "simulator_latency.json"


def connect(driver: str, host: str, port: int, password: str):
    params = dict(host=host, port=port, user="postgres", password=password, dbname="postgres")
    if driver == "psycopg":
        import psycopg

        return psycopg.connect(autocommit=True, **params)
    import psycopg2

    conn = psycopg2.connect(**params)
    conn.autocommit = True
    return conn


def summary(samples_ns: list[int]) -> dict[str, float]:
    ordered = sorted(samples_ns)
    return {
        "median_ms": statistics.median(ordered) / 1e6,
        "p99_ms": ordered[int(len(ordered) * 0.99) - 1] / 1e6,
        "mean_ms": statistics.fmean(ordered) / 1e6,
    }


def time_select_1(connections: dict[str, object], iterations: int) -> dict[str, dict]:
    cursors = {name: conn.cursor() for name, conn in connections.items()}
    samples: dict[str, list[int]] = {name: [] for name in connections}
    for cursor in cursors.values():  # warm up
        for _ in range(200):
            cursor.execute("SELECT 1")
            cursor.fetchone()
    clock = time.perf_counter_ns
    for _ in range(iterations):
        for name, cursor in cursors.items():
            started = clock()
            cursor.execute("SELECT 1")
            cursor.fetchone()
            samples[name].append(clock() - started)
    return {name: summary(values) for name, values in samples.items()}


def time_resume(sim: AuroraSimulator, driver: str, password: str, rounds: int) -> dict:
    """Milliseconds from resume() returning to the held connect returning."""
    delays = []
    for _ in range(rounds):
        sim.pause()
        connected: list[float] = []

        def open_one(connected: list[float] = connected) -> None:
            conn = connect(driver, sim.host, sim.port, password)
            connected.append(time.perf_counter())
            conn.close()

        worker = threading.Thread(target=open_one)
        worker.start()
        sim.wait_for(lambda s: s["holding"] == 1)
        sim.resume()
        resumed = time.perf_counter()
        worker.join()
        delays.append((connected[0] - resumed) * 1000)
    delays.sort()
    return {"median_ms": statistics.median(delays), "max_ms": delays[-1], "rounds": rounds}


def start_cli(port: int) -> tuple[subprocess.Popen, int]:
    process = subprocess.Popen(
        [
            sys.executable, "-m", "orca_db.testing.simulator",
            "--upstream", f"127.0.0.1:{port}", "--listen", "127.0.0.1:0",
        ],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        cwd=Path(__file__).resolve().parent.parent,
    )  # fmt: skip
    banner = process.stdout.readline()
    return process, int(banner.split(" -> ")[0].rsplit(":", 1)[1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--iterations", type=int, default=5000)
    parser.add_argument("--driver", choices=("psycopg2", "psycopg"), default="psycopg2")
    parser.add_argument("--cli", action="store_true", help="also time the simulator as a process")
    parser.add_argument("--resume-rounds", type=int, default=20)
    args = parser.parse_args()

    server = PostgresServer().start()
    sim = AuroraSimulator("127.0.0.1", server.port).start()
    os.environ["ORCA_DB_SIMULATOR_LOOP"] = "asyncio"
    plain = AuroraSimulator("127.0.0.1", server.port).start()
    del os.environ["ORCA_DB_SIMULATOR_LOOP"]
    cli = None
    try:
        paths = {
            "direct": connect(args.driver, "127.0.0.1", server.port, server.password),
            f"thread, {sim.loop_kind}": connect(args.driver, sim.host, sim.port, server.password),
            "thread, asyncio": connect(args.driver, plain.host, plain.port, server.password),
        }
        if args.cli:
            cli, cli_port = start_cli(server.port)
            paths["process (CLI)"] = connect(args.driver, "127.0.0.1", cli_port, server.password)
        latency = time_select_1(paths, args.iterations)
        resume = time_resume(sim, args.driver, server.password, args.resume_rounds)
    finally:
        sim.stop()
        plain.stop()
        if cli is not None:
            cli.stdin.close()
            cli.terminate()
            cli.wait()
        server.destroy()

    direct = latency["direct"]["median_ms"]
    print(f"SELECT 1 round trip, {args.driver}, {args.iterations} interleaved iterations")
    print(f"{'path':<22}{'median ms':>11}{'p99 ms':>10}{'mean ms':>10}{'added (median)':>16}")
    for name, figures in latency.items():
        added = figures["median_ms"] - direct
        print(
            f"{name:<22}{figures['median_ms']:>11.3f}{figures['p99_ms']:>10.3f}"
            f"{figures['mean_ms']:>10.3f}{added:>16.3f}"
        )
    print(
        f"held connect completes after resume(): median {resume['median_ms']:.1f} ms, "
        f"max {resume['max_ms']:.1f} ms over {resume['rounds']} rounds"
    )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "benchmark": "simulator_latency",
                "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "driver": args.driver,
                "iterations": args.iterations,
                "python": platform.python_version(),
                "cpus": os.cpu_count(),
                "load_average": os.getloadavg(),
                "select_1": latency,
                "added_median_ms": {
                    name: figures["median_ms"] - direct for name, figures in latency.items()
                },
                "resume": resume,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"written to {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
