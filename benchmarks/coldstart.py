"""Import and cold-start cost as an AWS Lambda pays it: fresh interpreters,
each configuring Django with one database (stock engine or aurora engine),
running ``django.setup()`` and a first query; stock and aurora runs
alternate. A second set of runs under ``python -X importtime`` attributes
the difference to modules.

    python -m benchmarks.coldstart [--quick] [--runs N] [--drivers psycopg,psycopg2]
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import re
import shutil
import subprocess
import sys
import time

from benchmarks import common

# Runs in a fresh interpreter: argv[1] engine, argv[2] driver; the server in
# ORCA_BENCH_SERVER. Prints one JSON line of milliseconds since its start.
CHILD = r"""
import time
t0 = time.perf_counter()
import json, os, sys
# Under callgrind --dump-before=ctermid, each mark() closes a segment.
mark = os.ctermid if os.environ.get("ORCA_BENCH_MARK") else (lambda: None)
engine, driver = sys.argv[1], sys.argv[2]
if driver == "psycopg2":
    sys.modules["psycopg"] = None
info = json.loads(os.environ["ORCA_BENCH_SERVER"])
import django
from django.conf import settings
settings.configure(
    DATABASES={"default": {
        "ENGINE": engine, "NAME": "postgres", "USER": "postgres",
        "PASSWORD": info["password"], "HOST": "127.0.0.1", "PORT": str(info["port"]),
    }},
    INSTALLED_APPS=[], USE_TZ=True, SECRET_KEY="x",
)
django.setup()
t1 = time.perf_counter()
mark()
from django.db import connection
connection.ensure_connection  # loads the backend module (ENGINE + ".base")
t2 = time.perf_counter()
mark()
with connection.cursor() as cursor:
    cursor.execute("SELECT 1")
    cursor.fetchone()
t3 = time.perf_counter()
mark()
print(json.dumps({
    "setup_ms": (t1 - t0) * 1000,
    "backend_import_ms": (t2 - t1) * 1000,
    "first_query_ms": (t3 - t2) * 1000,
    "to_first_result_ms": (t3 - t0) * 1000,
    "driver": type(connection.connection).__module__.split(".")[0],
}))
"""

ENGINES = {"stock": common.STOCK_ENGINE, "aurora": common.AURORA_ENGINE}
_IMPORTTIME = re.compile(r"^import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)")


def _child(engine: str, driver: str, info: dict, importtime: bool = False, prefix: list[str] = ()):
    env = {**os.environ, common.SERVER_ENV: json.dumps(info), "PYTHONHASHSEED": "0"}
    if prefix:
        env["ORCA_BENCH_MARK"] = "1"
    args = [*prefix, sys.executable, *(["-X", "importtime"] if importtime else []), "-c", CHILD]
    start = time.perf_counter()
    result = subprocess.run(
        [*args, engine, driver],
        cwd=common.ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    wall_ms = (time.perf_counter() - start) * 1000
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    figures["process_wall_ms"] = wall_ms
    return figures, result.stderr


def _imports(stderr: str) -> dict[str, int]:
    """Module -> self import time (µs) from ``-X importtime`` output."""
    modules = {}
    for line in stderr.splitlines():
        match = _IMPORTTIME.match(line)
        if match:
            modules[match.group(4)] = int(match.group(1))
    return modules


SEGMENTS = ("start_and_setup", "backend_import", "first_query")


def _instructions(engine: str, driver: str, info: dict) -> dict[str, int]:
    """Instructions of each cold-start phase, counted by callgrind."""
    with common.callgrind() as cg:
        _child(engine, driver, info, prefix=cg.prefix)
        totals = cg.totals()
    return dict(zip(SEGMENTS, totals[:3], strict=True))


def measure(driver: str, info: dict, runs: int, importtime_runs: int, callgrind: bool) -> dict:
    samples: dict[str, list[dict]] = {"stock": [], "aurora": []}
    for run in range(runs):
        order = ("stock", "aurora") if run % 2 == 0 else ("aurora", "stock")
        for name in order:
            samples[name].append(_child(ENGINES[name], driver, info)[0])
    # Import attribution: the median self time of each module over a few runs.
    imported: dict[str, dict[str, list[int]]] = {"stock": {}, "aurora": {}}
    for _ in range(importtime_runs):
        for name in ("stock", "aurora"):
            for module, us in _imports(_child(ENGINES[name], driver, info, True)[1]).items():
                imported[name].setdefault(module, []).append(us)
    medians = {
        name: {module: sorted(v)[len(v) // 2] for module, v in modules.items()}
        for name, modules in imported.items()
    }
    only_aurora = {
        module: us for module, us in medians["aurora"].items() if module not in medians["stock"]
    }
    counted = {}
    if callgrind:
        counted = {name: _instructions(engine, driver, info) for name, engine in ENGINES.items()}
    keys = ("setup_ms", "backend_import_ms", "first_query_ms", "to_first_result_ms")
    summary = {
        name: {key: common.summary([s[key] for s in values]) for key in (*keys, "process_wall_ms")}
        for name, values in samples.items()
    }
    return {
        "driver": driver,
        "drivers_in_use": sorted({s["driver"] for v in samples.values() for s in v}),
        "runs": runs,
        "ms": summary,
        "difference_ms": {
            key: summary["aurora"][key]["median"] - summary["stock"][key]["median"]
            for key in (*keys, "process_wall_ms")
        },
        "importtime_total_ms": {
            name: sum(modules.values()) / 1000 for name, modules in medians.items()
        },
        "instructions": counted,
        "modules_only_with_aurora": {
            "count": len(only_aurora),
            "self_ms": sum(only_aurora.values()) / 1000,
            "largest": dict(sorted(only_aurora.items(), key=lambda kv: -kv[1])[:15]),
        },
    }


def main(argv: list[str] | None = None, server=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    parser.add_argument("--runs", type=int, help="fresh processes per engine and driver")
    parser.add_argument("--drivers", default=",".join(common.DRIVERS))
    parser.add_argument(
        "--no-callgrind", action="store_true", help="skip the instruction counts (slow)"
    )
    args = parser.parse_args(argv)
    callgrind = not args.no_callgrind and not args.quick and bool(shutil.which("valgrind"))
    runs = args.runs or (5 if args.quick else 25)
    importtime_runs = 2 if args.quick else 5
    # pip compiles what it installs; a checkout run with PYTHONDONTWRITEBYTECODE
    # would compile orca_db from source in every run while Django loads .pyc.
    compileall.compile_dir(common.ROOT / "orca_db", quiet=1)
    own_server = server is None
    server = server or common.start_server()
    try:
        results = {
            driver: measure(driver, common.server_info(server), runs, importtime_runs, callgrind)
            for driver in args.drivers.split(",")
        }
    finally:
        if own_server:
            server.destroy()
    rows = []
    for driver, result in results.items():
        for key in ("process_wall_ms", "setup_ms", "backend_import_ms", "first_query_ms"):
            rows.append(
                [
                    driver,
                    key,
                    result["ms"]["stock"][key]["median"],
                    result["ms"]["aurora"][key]["median"],
                    result["difference_ms"][key],
                ]
            )
        rows.append(
            [
                driver,
                "-X importtime total",
                result["importtime_total_ms"]["stock"],
                result["importtime_total_ms"]["aurora"],
                result["importtime_total_ms"]["aurora"] - result["importtime_total_ms"]["stock"],
            ]
        )
    print("Cold start (fresh interpreter; median ms; stock and aurora runs alternate)")
    print(common.table(["driver", "phase", "stock", "aurora", "aurora-stock"], rows))
    counted_rows = [
        [driver, segment, *(result["instructions"][n][segment] for n in ENGINES)]
        for driver, result in results.items()
        if result["instructions"]
        for segment in SEGMENTS
    ]
    if counted_rows:
        for row in counted_rows:
            row.append(row[3] - row[2])
        print("\nCold start, instructions (callgrind, client process)")
        print(common.table(["driver", "phase", "stock", "aurora", "aurora-stock"], counted_rows))
    for driver, result in results.items():
        extra = result["modules_only_with_aurora"]
        largest = ", ".join(f"{m} {us / 1000:.1f}" for m, us in list(extra["largest"].items())[:8])
        print(
            f"{driver}: {extra['count']} modules only with aurora, {extra['self_ms']:.1f} ms "
            f"(largest, ms: {largest})"
        )
    data = {"quick": args.quick, "results": results}
    path = common.save("coldstart", data)
    print(f"-> {path}")
    return data


if __name__ == "__main__":
    main(sys.argv[1:])
