#!/usr/bin/env python
"""What ``orca_db.sqlalchemy.run_transaction`` costs per transaction, wall
clock, against ``engine.begin()`` on a stock engine and on the plugin's.

Interleaved rounds (machine noise hits every variant alike), one INSERT or
one ``SELECT 1`` per transaction, medians in microseconds::

    python benchmarks/sqlalchemy_run_transaction.py --driver psycopg2
    python benchmarks/sqlalchemy_run_transaction.py --driver psycopg --rounds 9

A throwaway PostgreSQL is started (over TCP on 127.0.0.1). The difference
between ``run_transaction`` and ``run_transaction(resolve_commit=False)`` on
the INSERT is the round trip that reads the transaction id before COMMIT.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--driver", choices=("psycopg", "psycopg2"), default="psycopg2")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--per-round", type=int, default=500)
    args = parser.parse_args()

    from sqlalchemy import URL, create_engine, text

    from orca_db.sqlalchemy import run_transaction
    from orca_db.testing.postgres import PostgresServer

    server = PostgresServer().start()
    try:
        url = URL.create(
            f"postgresql+{args.driver}",
            username=server.superuser,
            password=server.password,
            host="127.0.0.1",
            port=server.port,
            database="postgres",
        )
        stock = create_engine(url)
        orca = create_engine(url, plugins=["orca_db"], aurora={"deadline": 20})
        with stock.begin() as connection:
            connection.exec_driver_sql("CREATE TABLE bench (id serial PRIMARY KEY, v text)")
        insert, select = text("INSERT INTO bench (v) VALUES (:v)"), text("SELECT 1")

        def begin(engine, statement):
            def once():
                with engine.begin() as connection:
                    connection.execute(statement, {"v": "x"}).close()

            return once

        def run(engine, statement, **options):
            def once():
                run_transaction(
                    engine, lambda c: c.execute(statement, {"v": "x"}).close(), **options
                )

            return once

        cases = {
            "INSERT, stock engine.begin()": begin(stock, insert),
            "INSERT, plugin engine.begin()": begin(orca, insert),
            "INSERT, run_transaction(resolve_commit=False)": run(
                orca, insert, resolve_commit=False
            ),
            "INSERT, run_transaction": run(orca, insert),
            "SELECT 1, stock engine.begin()": begin(stock, select),
            "SELECT 1, plugin engine.begin()": begin(orca, select),
            "SELECT 1, run_transaction": run(orca, select),
        }
        for once in cases.values():
            for _ in range(100):
                once()
        timings: dict[str, list[float]] = {name: [] for name in cases}
        for _ in range(args.rounds):
            for name, once in cases.items():
                started = time.perf_counter()
                for _ in range(args.per_round):
                    once()
                timings[name].append((time.perf_counter() - started) / args.per_round * 1e6)
        print(f"{args.driver}, {args.rounds} rounds of {args.per_round}, median us/transaction")
        for name, values in timings.items():
            print(f"  {name:48s} {statistics.median(values):8.1f}")
    finally:
        server.destroy()


if __name__ == "__main__":
    main()
