#!/usr/bin/env python
"""What resolving a lost COMMIT costs per transaction.

``retry_atomic`` asks the server for the transaction id right before COMMIT
(``pg_current_xact_id_if_assigned()``): one more round trip per transaction,
by default only in transactions that wrote. This compares, interleaved so
that machine noise hits every variant alike:

- ``atomic``: Django's ``transaction.atomic`` on the aurora engine;
- ``retry_atomic(resolve_commit=False)``: never asks;
- ``retry_atomic``: the default, asks after a write;
- ``retry_atomic(resolve_commit=True)``: always asks;

on a write transaction (one Note and two Tags, like the tests) and a read-only
one. Wall clock: transactions per second, median over rounds. Client work:
run under callgrind, instructions per transaction (two sizes, subtracted,
so start-up cancels out)::

    python benchmarks/commit_resolution.py                      # wall clock
    python benchmarks/commit_resolution.py --url postgresql://... --rounds 9
    python benchmarks/commit_resolution.py --callgrind          # needs valgrind

By default a throwaway PostgreSQL is started (fsync off, over TCP on
127.0.0.1); ``--url`` names another server (it needs CREATE TABLE rights).
"""

from __future__ import annotations

import argparse
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

VARIANTS = (
    "atomic",
    "retry_atomic(resolve_commit=False)",
    "retry_atomic",
    "retry_atomic(resolve_commit=True)",
)
RESOLVE = {
    "retry_atomic(resolve_commit=False)": False,
    "retry_atomic": None,
    "retry_atomic(resolve_commit=True)": True,
}
WORKLOADS = ("write", "read")


def setup_django(url: str) -> None:
    import django
    from django.conf import settings

    from orca_db_project import parse_database_url

    settings.configure(
        DATABASES={"default": parse_database_url(url)},
        INSTALLED_APPS=[],
        USE_TZ=True,
    )
    django.setup()
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE TABLE IF NOT EXISTS bench_note (id bigserial PRIMARY KEY, text text NOT NULL)"
        )
        cursor.execute(
            "CREATE TABLE IF NOT EXISTS bench_tag (id bigserial PRIMARY KEY, "
            "note_id bigint NOT NULL REFERENCES bench_note, name text NOT NULL)"
        )


def write_body() -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("INSERT INTO bench_note (text) VALUES (%s) RETURNING id", ["bench"])
        (note_id,) = cursor.fetchone()
        cursor.execute("INSERT INTO bench_tag (note_id, name) VALUES (%s, 'a')", [note_id])
        cursor.execute("INSERT INTO bench_tag (note_id, name) VALUES (%s, 'b')", [note_id])


def read_body() -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM bench_note WHERE id < 100")
        cursor.fetchone()


def transaction_runner(variant: str, workload: str):
    from django.db import transaction

    from orca_db import retry_atomic

    body = write_body if workload == "write" else read_body
    if variant == "atomic":

        def run() -> None:
            with transaction.atomic():
                body()

        return run
    return retry_atomic(resolve_commit=RESOLVE[variant])(body)


def wall_clock(rounds: int, seconds: float) -> None:
    from django.db import connection

    connection.ensure_connection()
    rng = random.Random(0)
    for workload in WORKLOADS:
        rates: dict[str, list[float]] = {v: [] for v in VARIANTS}
        runners = {v: transaction_runner(v, workload) for v in VARIANTS}
        for run in runners.values():  # warm up
            for _ in range(200):
                run()
        for _ in range(rounds):
            order = list(VARIANTS)
            rng.shuffle(order)
            for variant in order:
                run = runners[variant]
                done = 0
                started = time.perf_counter()
                while (elapsed := time.perf_counter() - started) < seconds:
                    for _ in range(20):
                        run()
                    done += 20
                rates[variant].append(done / elapsed)
        base = statistics.median(rates["retry_atomic(resolve_commit=False)"])
        print(f"\n{workload} transaction, {rounds} interleaved rounds of {seconds} s")
        for variant in VARIANTS:
            median = statistics.median(rates[variant])
            spread = f"{min(rates[variant]):.0f}-{max(rates[variant]):.0f}"
            print(
                f"  {variant:38s} {median:8.0f} tx/s  ({spread})  "
                f"{1e6 / median:7.1f} us/tx  {100 * (median / base - 1):+6.1f}% vs no resolution"
            )


def count_instructions(url: str, variant: str, workload: str, n: int) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "callgrind.out"
        subprocess.run(
            [
                "valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
                sys.executable, str(Path(__file__).resolve()), "--url", url,
                "--one", variant, workload, str(n),
            ],
            check=True, capture_output=True,
        )  # fmt: skip
        summary = re.search(r"^summary:\s+(\d+)", out.read_text(), re.MULTILINE)
        assert summary is not None
        return int(summary.group(1))


def callgrind(url: str, small: int, large: int) -> None:
    print(f"\nclient instructions per transaction (callgrind, {large} minus {small} transactions)")
    for workload in WORKLOADS:
        per_tx = {}
        for variant in VARIANTS:
            low = count_instructions(url, variant, workload, small)
            high = count_instructions(url, variant, workload, large)
            per_tx[variant] = (high - low) / (large - small)
        base = per_tx["retry_atomic(resolve_commit=False)"]
        for variant in VARIANTS:
            print(
                f"  {workload:5s} {variant:38s} {per_tx[variant]:10.0f} instr/tx  "
                f"{100 * (per_tx[variant] / base - 1):+6.1f}% vs no resolution"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="postgresql://... (default: a throwaway server)")
    parser.add_argument("--rounds", type=int, default=7, help="0: no wall-clock runs")
    parser.add_argument("--seconds", type=float, default=1.0, help="per variant and round")
    parser.add_argument("--callgrind", action="store_true", help="count client instructions")
    parser.add_argument(
        "--one", nargs=3, metavar=("VARIANT", "WORKLOAD", "N"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()

    server = None
    url = args.url
    if url is None:
        from orca_db.testing.postgres import PostgresServer

        server = PostgresServer().start()
        url = server.url()
    try:
        if args.one:
            variant, workload, n = args.one
            setup_django(url)
            run = transaction_runner(variant, workload)
            for _ in range(int(n)):
                run()
            return
        setup_django(url)
        print(f"python {sys.version.split()[0]}, driver: {_driver()}, pid {os.getpid()}")
        if args.rounds:
            wall_clock(args.rounds, args.seconds)
        if args.callgrind:
            callgrind(url, small=20, large=220)
    finally:
        if server is not None:
            server.destroy()


def _driver() -> str:
    from django.db import connection

    return type(connection.connection).__module__.split(".")[0]


if __name__ == "__main__":
    main()
