"""Per-query overhead in CPU instructions (the Python side), which the load
of a shared machine does not disturb, and where the extra ones go.

1. ``valgrind --tool=callgrind --dump-before=ctermid``: the worker calls
   ``os.ctermid()`` (libc ``ctermid``, called by nothing else) between
   measured segments; callgrind then writes one profile per segment, so
   interpreter start-up and Django set-up fall outside every segment. Each
   segment runs N iterations of one workload on one alias; instructions per
   statement = segment total / N / statements per iteration. Only the client
   process runs under valgrind: the server's work is not counted.
2. ``sys.setprofile`` call counts: which Python and C functions the aurora
   path calls per statement that the stock path does not.

Callgrind's counts are exact for one process, but not for one commit: the
interpreter's attribute cache (4096 slots indexed by the address of the
attribute's name) misses where two hot lookups share a slot, and where that
happens moves with the heap's layout, which the length of an environment
variable or of the checkout's path shifts. One layout can add or remove
1,000-2,000 instructions per statement on one alias and not the other. So
the worker runs in several layouts (``--layouts``, each with a padding
variable of another length) and the medians are taken over all of them;
the spread of the per-layout "extra" is printed.

    python -m benchmarks.instructions [--quick] [--drivers psycopg,psycopg2] [--layouts N]
        [--workloads request_select1,raw_select1]
"""

from __future__ import annotations

import argparse
import collections
import os
import shutil
import sys

from benchmarks import common

ALIASES = ("stock", "aurora")
#: The workloads a worker runs (comma-separated names; unset: all), passed
#: from ``--workloads`` through the environment the workers inherit.
WORKLOADS_ENV = "ORCA_BENCH_WORKLOADS"


def _setup(driver: str):
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

    chosen = os.environ.get(WORKLOADS_ENV)
    if chosen:
        names = set(chosen.split(","))
        unknown = names - set(workloads.WORKLOADS) - set(workloads.CONNECT_WORKLOADS)
        if unknown:
            raise SystemExit(f"--workloads: no workload named {', '.join(sorted(unknown))}")
        for table in (workloads.WORKLOADS, workloads.CONNECT_WORKLOADS):
            for name in set(table) - names:
                del table[name]  # this worker process's copy only
    workloads.use_ids(common.create_table())
    for function in [*workloads.WORKLOADS.values(), *workloads.CONNECT_WORKLOADS.values()]:
        for alias in ALIASES:
            for _ in range(10):
                function(alias)
    return workloads


def segments_worker(driver: str, iterations: int, reps: int) -> dict:
    """Run under callgrind: one segment per (rep, workload, alias), in the
    order listed in the result; ``os.ctermid()`` closes each segment."""
    workloads = _setup(driver)
    order = common.run_segments(workloads, {alias: alias for alias in ALIASES}, iterations, reps)
    for rep in range(reps):
        aliases = ALIASES if rep % 2 == 0 else ALIASES[::-1]
        for name, function in workloads.CONNECT_WORKLOADS.items():
            for alias in aliases:
                for _ in range(5):
                    function(alias)
                os.ctermid()
                order.append([name, alias, 5])
    pieces = []
    functions = _pieces()  # connects: kept out of the measured segments
    os.ctermid()
    for label, function in functions.items():
        n = 20 if "execute" in label else 1000
        for _ in range(5):
            function()  # warm up
        for _ in range(n):
            function()
        os.ctermid()
        pieces.append([label, n])
    return {
        "driver": driver,
        "segments": order,
        "pieces": pieces,
        "drivers_in_use": common.driver_in_use("aurora"),
    }


def calls_worker(driver: str, iterations: int) -> dict:
    """Count the calls each workload makes per statement, on each alias."""
    workloads = _setup(driver)
    result: dict = {"driver": driver, "iterations": iterations, "workloads": {}}
    for name, function in {**workloads.WORKLOADS, **workloads.CONNECT_WORKLOADS}.items():
        stock, aurora = (common.count_calls(function, alias, iterations) for alias in ALIASES)
        per = iterations * common.statements(name)
        result["workloads"][name] = {
            "calls_per_statement": {
                "stock": sum(stock.values()) / per,
                "aurora": sum(aurora.values()) / per,
            },
            "difference": common.extra_calls(stock, aurora, per),
        }
    return result


def _pieces():
    """The pieces the aurora path adds, one call each, and their stock
    counterparts: measured alone they say where the extra instructions go."""
    from django.db import connections, transaction

    from orca_db.drivers import Link
    from orca_db.sql import profile

    stock, aurora = connections["stock"], connections["aurora"]
    for connection in (stock, aurora):
        connection.ensure_connection()
    raw = aurora.connection
    link = Link(raw)
    insert = "INSERT INTO benchapp_item (name, value) VALUES (%s, %s)"
    driver_cursor = raw.cursor()
    stock_wrapper, aurora_wrapper = stock.cursor(), aurora.cursor()

    def create_close(connection):
        connection.create_cursor().close()

    def execute_in_transaction(connection, wrapper):
        with transaction.atomic(using=connection.alias):
            for _ in range(10):
                wrapper.execute("SELECT 1")

    return {
        "empty loop": lambda: None,
        "profile(INSERT ...), cached": lambda: profile(insert),
        "Link.server_closed() (live connection)": link.server_closed,
        "Link.transaction_status()": link.transaction_status,
        "connection.retry_settings": lambda: aurora.retry_settings,
        "stock make_cursor()": lambda: stock.make_cursor(driver_cursor),
        "aurora make_cursor()": lambda: aurora.make_cursor(driver_cursor),
        "stock create_cursor()+close": lambda: create_close(stock),
        "aurora create_cursor()+close": lambda: create_close(aurora),
        "stock 10 x execute('SELECT 1') in atomic": lambda: execute_in_transaction(
            stock, stock_wrapper
        ),
        "aurora 10 x execute('SELECT 1') in atomic": lambda: execute_in_transaction(
            aurora, aurora_wrapper
        ),
    }


def measure_instructions(
    driver: str, info: dict, iterations: int, reps: int, layouts: int = 1
) -> dict:
    across = common.AcrossLayouts()
    piece_values: dict[str, list[float]] = collections.defaultdict(list)
    for layout in range(layouts):
        result, totals = common.run_under_callgrind(
            "benchmarks.instructions",
            ["--worker", driver, "--iterations", str(iterations), "--reps", str(reps)],
            info,
            layout=layout,
            timeout=1800,
        )
        across.add(common.per_statement(result["segments"], totals))
        _add_pieces(result, totals, piece_values)
    pieces = {label: common.summary(values)["median"] for label, values in piece_values.items()}
    out = {
        name: {
            "stock": figures["instructions"]["stock"],
            "aurora": figures["instructions"]["aurora"],
            "ratio": figures["ratio"]["aurora"],
            "extra_per_statement": figures["extra_per_statement"]["aurora"],
            "extra_per_layout": figures["extra_per_layout"]["aurora"],
        }
        for name, figures in across.figures().items()
    }
    return {
        "driver": driver,
        "iterations": iterations,
        "reps": reps,
        "layouts": layouts,
        "workloads": out,
        "pieces_instructions": pieces,
    }


def _add_pieces(result: dict, totals: list[int], piece_values: dict) -> None:
    """One worker's pieces: instructions per call, the empty loop's
    subtracted, added to ``piece_values``."""
    # Dump 1 holds the set-up, then one dump per measured segment, then the
    # pieces' set-up, then one dump per piece.
    first_piece = 1 + len(result["segments"]) + 1
    piece_totals = totals[first_piece : first_piece + len(result["pieces"])]
    per_call = {
        label: total / n for (label, n), total in zip(result["pieces"], piece_totals, strict=True)
    }
    loop = per_call.get("empty loop", 0.0)
    for label, value in per_call.items():
        if label != "empty loop":
            piece_values[label].append(value - loop)


def main(argv: list[str] | None = None, server=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    common.add_run_options(parser, "alias")
    parser.add_argument(
        "--workloads", help="comma-separated workload names (default: all; see workloads.py)"
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--calls", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker and args.calls:
        common.emit(calls_worker(args.worker, args.iterations))
        return {}
    if args.worker:
        common.emit(segments_worker(args.worker, args.iterations, args.reps))
        return {}
    if args.workloads:
        os.environ[WORKLOADS_ENV] = args.workloads  # the workers inherit it
    if not shutil.which("valgrind"):
        raise SystemExit("valgrind is not installed (apt-get install -y valgrind)")

    iterations, reps, drivers, layouts = common.run_settings(args)
    own_server = server is None
    server = server or common.start_server()
    info = common.server_info(server)
    results, calls = {}, {}
    try:
        for driver in drivers:
            results[driver] = measure_instructions(driver, info, iterations, reps, layouts)
            calls[driver] = common.run_worker(
                "benchmarks.instructions",
                ["--worker", driver, "--calls", "--iterations", "20"],
                info,
                timeout=600,
            )
    finally:
        if own_server:
            server.destroy()

    data = {"quick": args.quick, "instructions": results, "calls": calls}
    path = common.save("instructions", data)
    rows = []
    for driver, result in results.items():
        for name, figures in result["workloads"].items():
            call_counts = calls[driver]["workloads"].get(name, {}).get("calls_per_statement") or {
                "stock": float("nan"),
                "aurora": float("nan"),
            }
            rows.append(
                [
                    driver,
                    name,
                    round(figures["stock"]["median"]),
                    round(figures["aurora"]["median"]),
                    round(figures["extra_per_statement"]),
                    f"{figures['ratio']:.4f}",
                    f"{call_counts['stock']:.0f}/{call_counts['aurora']:.0f}",
                ]
            )
    print("Per-query overhead (instructions per statement, client process, callgrind)")
    print(
        common.table(
            ["driver", "workload", "stock Ir", "aurora Ir", "extra", "ratio", "calls s/a"],
            rows,
        )
    )
    if layouts > 1:
        print(f"\nExtra per statement in each of the {layouts} heap layouts (the spread is noise):")
        for driver, result in results.items():
            for name, figures in result["workloads"].items():
                values = ", ".join(str(round(v)) for v in figures["extra_per_layout"])
                print(f"  {driver} {name}: {values}")
    common.print_extra_calls(calls, "the aurora path")
    for driver, result in results.items():
        print(f"\nInstructions per call of single pieces ({driver}; empty loop subtracted):")
        print(
            common.table(
                ["piece", "instructions"],
                [[k, round(v)] for k, v in result["pieces_instructions"].items()],
            )
        )
    print(f"-> {path}")
    return data


if __name__ == "__main__":
    main(sys.argv[1:])
