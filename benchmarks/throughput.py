"""Throughput of a ``retry_atomic`` write workload with a scale event every
second, against the same workload with none.

A client process runs ``retry_atomic(transfer, i)`` back to back through the
Aurora simulator (``orca_db.testing.simulator``): each transaction inserts a
row carrying its own number ``i`` and increments one shared counter row.
The controller alternates fault-free windows and windows with
``simulator.scale_event()`` (every live backend ended, FATAL 57P01) once a
second; throughput is counted per window from the client's completion
times. At the end the table is checked: every completed ``i`` exactly once,
no row for a failed one, the counter equal to the number of rows.

    python -m benchmarks.throughput [--quick] [--windows N] [--window-seconds S]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks import common
from benchmarks.recovery import wait_for

COUNTER_NAME = "counter"


def client(driver: str, port: int, stop_file: str, out_file: str, deadline: float) -> None:
    info = {**common.worker_server_info(), "port": port}
    common.setup_django(driver, {"default": common.database(common.AURORA_ENGINE, info)})
    from django.db import connection
    from django.db.models import F

    from benchmarks.benchapp.models import Item
    from orca_db import retry_atomic
    from orca_db.signals import retry_event

    events: list[dict] = []

    def record(sender, event, **kwargs):
        events.append(
            {
                "at": time.monotonic(),
                "phase": event.phase,
                "outcome": event.outcome,
                "attempts": event.attempts,
                "elapsed_ms": round(event.elapsed_ms, 1),
                "error_type": event.error_type,
            }
        )

    retry_event.connect(record, weak=False)
    counter = Item.objects.get(name=COUNTER_NAME)

    def transfer(i: int) -> None:
        Item.objects.create(name="t", value=i)
        Item.objects.filter(pk=counter.pk).update(value=F("value") + 1)

    completed: list[list[float]] = []  # [i, monotonic instant]
    failures: list[list] = []
    ready = Path(out_file + ".ready")
    stop = Path(stop_file)
    stop_at = time.monotonic() + deadline
    i = 0
    while time.monotonic() < stop_at and not stop.exists():
        i += 1
        try:
            retry_atomic(transfer, i)
        except Exception as error:  # reported by the layer; recorded, then on
            failures.append([i, time.monotonic(), type(error).__name__, str(error)[:200]])
            connection.close()
        else:
            completed.append([i, time.monotonic()])
            if i == 1:
                ready.touch()
    Path(out_file).write_text(
        json.dumps(
            {
                "driver": common.driver_in_use(),
                "completed": completed,
                "failures": failures,
                "events": events,
            }
        )
    )


def run_driver(driver: str, server, windows: int, window_seconds: float) -> dict:
    from orca_db.testing.simulator import AuroraSimulator

    info = common.server_info(server)
    server.execute("DROP TABLE IF EXISTS benchapp_item")
    server.execute(
        "CREATE TABLE benchapp_item (id bigserial PRIMARY KEY, name varchar(100) NOT NULL,"
        " value integer NOT NULL)"
    )
    server.execute("INSERT INTO benchapp_item (name, value) VALUES (%s, 0)", [COUNTER_NAME])
    simulator = AuroraSimulator("127.0.0.1", server.port).start()
    directory = Path(tempfile.mkdtemp(prefix="orca-bench-throughput-"))
    stop_file, out_file = directory / "stop", directory / "out.json"
    deadline = windows * window_seconds + 60
    env = {**os.environ, common.SERVER_ENV: json.dumps(info), "PYTHONHASHSEED": "0"}
    process = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.throughput", "--client", driver]
        + ["--port", str(simulator.port), "--stop-file", str(stop_file)]
        + ["--out-file", str(out_file), "--deadline", str(deadline)],
        cwd=common.ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    spans: list[dict] = []
    scale_events = 0
    try:
        wait_for(lambda: Path(str(out_file) + ".ready").exists() or process.poll() is not None, 60)
        time.sleep(0.5)  # past start-up
        for window in range(windows):
            faults = window % 2 == 1
            start = time.monotonic()
            next_event = start + 0.5
            while time.monotonic() < start + window_seconds:
                if faults and time.monotonic() >= next_event:
                    simulator.scale_event()
                    scale_events += 1
                    next_event += 1.0
                time.sleep(0.01)
            spans.append({"faults": faults, "start": start, "end": time.monotonic()})
        stop_file.touch()
        _, err = process.communicate(timeout=120)
        if process.returncode != 0:
            raise RuntimeError(f"throughput client failed:\n{err[-3000:]}")
        stats = simulator.stats
    finally:
        if process.poll() is None:
            process.kill()
        simulator.stop()
    result = json.loads(out_file.read_text())
    instants = [t for _, t in result["completed"]]
    for span in spans:
        count = sum(1 for t in instants if span["start"] <= t < span["end"])
        span["transactions_per_s"] = count / (span["end"] - span["start"])
    pairs = [
        spans[k]["transactions_per_s"]
        / ((spans[k - 1]["transactions_per_s"] + spans[k + 1]["transactions_per_s"]) / 2)
        for k in range(1, len(spans) - 1)
        if spans[k]["faults"]
    ]
    clean = [s["transactions_per_s"] for s in spans if not s["faults"]]
    faulty = [s["transactions_per_s"] for s in spans if s["faults"]]
    return {
        "driver": result["driver"],
        "windows": spans,
        "scale_events": scale_events,
        "simulator_stats": stats,
        "fault_free_tps": common.summary(clean),
        "scale_event_tps": common.summary(faulty),
        "ratio": common.summary(faulty)["median"] / common.summary(clean)["median"],
        # Each faulty window against the mean of its clean neighbours.
        "pair_ratios": pairs,
        "ratio_iqr": [common.quantile(pairs, 0.25), common.quantile(pairs, 0.75)],
        "events": result["events"],
        "failures": result["failures"][:20],
        "failure_count": len(result["failures"]),
        "retry_time_share": _retry_time_share(spans, result["events"]),
        "check": _check(server, [i for i, _ in result["completed"]], result["failures"]),
    }


def _retry_time_share(spans: list[dict], events: list[dict]) -> float | None:
    """The share of the faulty windows' time the client spent recovering
    (the retry events' elapsed time): 1 minus it is the throughput ratio a
    quiet machine would show."""
    faulty = [s for s in spans if s["faults"]]
    total = sum(s["end"] - s["start"] for s in faulty)
    if not total:
        return None
    spent = sum(
        e["elapsed_ms"] / 1000
        for e in events
        if any(s["start"] <= e["at"] < s["end"] for s in faulty)
    )
    return spent / total


def _check(server, completed: list[int], failures: list[list]) -> dict:
    """Each completed transaction's row exactly once; none for a transaction
    that raised, unless it raised OutcomeUnknown (its row may be there)."""
    rows = server.execute("SELECT value, count(*) FROM benchapp_item WHERE name = 't' GROUP BY 1")
    counts = dict(rows)
    unknown = {i for i, _, kind, _ in failures if kind == "OutcomeUnknown"}
    duplicated = sorted(i for i, n in counts.items() if n > 1)
    missing = sorted(set(completed) - set(counts))
    unexpected = sorted(set(counts) - set(completed) - unknown)
    counter = server.execute("SELECT value FROM benchapp_item WHERE name = %s", [COUNTER_NAME])
    return {
        "completed": len(completed),
        "rows": sum(counts.values()),
        "counter": counter[0][0],
        "duplicated": duplicated[:20],
        "missing": missing[:20],
        "unexpected": unexpected[:20],
        "ok": not duplicated
        and not missing
        and not unexpected
        and counter[0][0] == sum(counts.values()),
    }


def main(argv: list[str] | None = None, server=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    parser.add_argument("--windows", type=int, help="windows, alternately clean and faulty")
    parser.add_argument("--window-seconds", type=float)
    parser.add_argument("--drivers", help="default: both (psycopg alone with --quick)")
    parser.add_argument("--client", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--stop-file", help=argparse.SUPPRESS)
    parser.add_argument("--out-file", help=argparse.SUPPRESS)
    parser.add_argument("--deadline", type=float, default=600, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.client:
        client(args.client, args.port, args.stop_file, args.out_file, args.deadline)
        return {}

    # Odd: every faulty window has a clean one on each side.
    windows = args.windows or (5 if args.quick else 21)
    window_seconds = args.window_seconds or (2.0 if args.quick else 4.0)
    own_server = server is None
    server = server or common.start_server()
    results: dict = {}
    try:
        drivers = args.drivers or ("psycopg" if args.quick else ",".join(common.DRIVERS))
        for driver in drivers.split(","):
            try:
                results[driver] = run_driver(driver, server, windows, window_seconds)
            except ImportError as error:  # the simulator or retry_atomic not there yet
                results[driver] = {"not_measured": str(error)}
    finally:
        if own_server:
            server.destroy()
    rows = []
    for driver, result in results.items():
        if "not_measured" in result:
            rows.append([driver, "-", "-", "-", "-", "-", "-", "-", result["not_measured"]])
            continue
        rows.append(
            [
                driver,
                result["fault_free_tps"]["median"],
                result["scale_event_tps"]["median"],
                f"{result['ratio']:.3f}",
                f"{result['ratio_iqr'][0]:.2f}-{result['ratio_iqr'][1]:.2f}",
                f"{1 - result['retry_time_share']:.3f}",
                result["scale_events"],
                result["failure_count"],
                "ok" if result["check"]["ok"] else f"FAILED {result['check']}",
            ]
        )
    print("retry_atomic throughput (transactions/s, median over windows)")
    print(
        common.table(
            [
                "driver",
                "fault-free",
                "scale event/s",
                "ratio",
                "IQR",
                "1-retry share",
                "events",
                "errors",
                "check",
            ],
            rows,
        )
    )
    data = {
        "quick": args.quick,
        "windows": windows,
        "window_seconds": window_seconds,
        "results": results,
    }
    path = common.save("throughput", data)
    print(f"-> {path}")
    return data


if __name__ == "__main__":
    main(sys.argv[1:])
