"""Cold start of a SQLAlchemy-only Lambda: a fresh interpreter imports
SQLAlchemy (and ``orca_db.sqlalchemy``), creates an engine (with the
``orca_db`` plugin, or stock) and runs one query; stock and plugin runs
alternate. Wall-clock medians, ``-X importtime`` totals, the number of
modules loaded, and any Django module that got loaded (there should be
none: a SQLAlchemy-only project need not install Django). With
``--aws-python``, the AWS wrapper's dialect too (default plugins).

    python -m benchmarks.sqlalchemy_coldstart [--runs N] [--drivers psycopg,psycopg2]
        [--aws-python /path/to/venv/bin/python] [--callgrind]
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

from benchmarks import common

# Runs in a fresh interpreter: argv[1] mode, argv[2] driver; the server in
# ORCA_BENCH_SERVER. Prints one JSON line.
CHILD = r"""
import time
t0 = time.perf_counter()
import json, os, sys
mode, driver = sys.argv[1], sys.argv[2]
# Under callgrind --dump-before=ctermid, each mark() closes a segment.
mark = os.ctermid if os.environ.get("ORCA_BENCH_MARK") else (lambda: None)
info = json.loads(os.environ["ORCA_BENCH_SERVER"])
from sqlalchemy import URL, create_engine, text
kwargs = {}
if mode == "aurora":
    import orca_db.sqlalchemy
    kwargs["plugins"] = ["orca_db"]
if mode == "aws":
    driver = "aws_wrapper_psycopg"
t1 = time.perf_counter()
mark()
url = URL.create(f"postgresql+{driver}", username="postgres", password=info["password"],
                 host="127.0.0.1", port=info["port"], database="postgres")
engine = create_engine(url, **kwargs)
with engine.connect() as connection:
    connection.execute(text("SELECT 1")).scalar()
t2 = time.perf_counter()
mark()
print(json.dumps({
    "import_ms": (t1 - t0) * 1000,
    "first_query_ms": (t2 - t1) * 1000,
    "to_first_result_ms": (t2 - t0) * 1000,
    "modules": len(sys.modules),
    "django_modules": sorted(m for m in sys.modules if m == "django" or m.startswith("django.")),
}))
"""

MODES = ("stock", "aurora")
_IMPORTTIME = re.compile(r"^import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)")


def _child(mode: str, driver: str, info: dict, python: str, importtime: bool = False, prefix=()):
    env = {**os.environ, common.SERVER_ENV: json.dumps(info), "PYTHONHASHSEED": "0"}
    if prefix:
        env["ORCA_BENCH_MARK"] = "1"
    args = [
        *prefix,
        python,
        *(["-X", "importtime"] if importtime else []),
        "-c",
        CHILD,
        mode,
        driver,
    ]
    start = time.perf_counter()
    result = subprocess.run(
        args, cwd=common.ROOT, env=env, capture_output=True, text=True, timeout=300, check=True
    )
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    figures["process_wall_ms"] = (time.perf_counter() - start) * 1000
    return figures, result.stderr


def _import_total_ms(stderr: str) -> float:
    """The sum of ``-X importtime``'s self times (every module imported)."""
    total = 0
    for line in stderr.splitlines():
        match = _IMPORTTIME.match(line)
        if match:
            total += int(match.group(1))
    return total / 1000


SEGMENTS = ("start_and_imports", "engine_and_first_query")


def _instructions(mode: str, driver: str, info: dict, python: str) -> dict[str, int]:
    """Instructions of each phase, counted by callgrind (the load of a
    shared machine does not move them)."""
    with common.callgrind() as cg:
        _child(mode, driver, info, python, prefix=cg.prefix)
        totals = cg.totals()
    return dict(zip(SEGMENTS, totals[:2], strict=True))


def measure(
    driver: str, info: dict, runs: int, aws_python: str | None, callgrind: bool = False
) -> dict:
    pythons = {mode: sys.executable for mode in MODES}
    if aws_python and driver == "psycopg":
        pythons["aws"] = aws_python
    samples: dict[str, list[dict]] = {mode: [] for mode in pythons}
    importtime: dict[str, list[float]] = {mode: [] for mode in pythons}
    modes = list(pythons)
    for run in range(runs):
        shift = run % len(modes)
        for mode in modes[shift:] + modes[:shift]:
            samples[mode].append(_child(mode, driver, info, pythons[mode])[0])
            if run < max(3, runs // 5):
                stderr = _child(mode, driver, info, pythons[mode], importtime=True)[1]
                importtime[mode].append(_import_total_ms(stderr))
    out = {}
    for mode, values in samples.items():
        out[mode] = {
            key: common.summary([v[key] for v in values])
            for key in ("process_wall_ms", "import_ms", "first_query_ms", "to_first_result_ms")
        }
        out[mode]["importtime_total_ms"] = common.summary(importtime[mode])
        out[mode]["modules"] = values[-1]["modules"]
        out[mode]["django_modules"] = values[-1]["django_modules"]
        if callgrind:
            out[mode]["instructions"] = _instructions(mode, driver, info, pythons[mode])
    return out


def main(argv: list[str] | None = None, server=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    parser.add_argument("--runs", type=int, help="fresh processes per mode and driver")
    parser.add_argument("--drivers", default=",".join(common.DRIVERS))
    parser.add_argument("--aws-python", help="a virtualenv's python with the AWS wrapper")
    parser.add_argument(
        "--callgrind", action="store_true", help="also count each phase's instructions (valgrind)"
    )
    args = parser.parse_args(argv)
    runs = args.runs or (5 if args.quick else 21)
    # Compiled as pip would install it (see benchmarks.coldstart).
    compileall.compile_dir(common.ROOT / "orca_db", quiet=1)
    own_server = server is None
    server = server or common.start_server()
    try:
        info = common.server_info(server)
        results = {
            d: measure(d, info, runs, args.aws_python, args.callgrind)
            for d in args.drivers.split(",")
        }
    finally:
        if own_server:
            server.destroy()
    rows = []
    for driver, by_mode in results.items():
        for mode, figures in by_mode.items():
            rows.append(
                [
                    driver,
                    mode,
                    figures["process_wall_ms"]["median"],
                    figures["import_ms"]["median"],
                    figures["first_query_ms"]["median"],
                    figures["importtime_total_ms"]["median"],
                    figures["modules"],
                    len(figures["django_modules"]),
                ]
            )
    print("SQLAlchemy cold start (fresh interpreter, median ms; modes alternate)")
    print(
        common.table(
            [
                "driver",
                "engine",
                "process wall",
                "imports",
                "engine+1st query",
                "-X importtime sum",
                "modules",
                "django modules",
            ],
            rows,
        )
    )
    counted = [
        [driver, mode, *(figures["instructions"][s] for s in SEGMENTS)]
        for driver, by_mode in results.items()
        for mode, figures in by_mode.items()
        if "instructions" in figures
    ]
    if counted:
        print("\nCold start, instructions (callgrind, the whole client process)")
        print(common.table(["driver", "engine", *SEGMENTS], counted))
    for driver, by_mode in results.items():
        for mode, figures in by_mode.items():
            if figures["django_modules"]:
                shown = ", ".join(figures["django_modules"][:10])
                print(f"{driver} {mode}: Django loaded: {shown}")
    data = {"quick": args.quick, "runs": runs, "results": results}
    path = common.save("sqlalchemy_coldstart", data)
    print(f"-> {path}")
    return data


if __name__ == "__main__":
    main(sys.argv[1:])
