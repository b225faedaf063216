"""SQLAlchemy: client instructions per Core statement and per ORM query, the
``orca_db`` engine plugin against stock SQLAlchemy (and, with
``--aws-python``, the AWS Advanced Python Wrapper's dialect), measured in the
same worker process.

The method of ``benchmarks.instructions`` (the Django figures): one worker
per driver under ``valgrind --tool=callgrind --dump-before=ctermid``, one
segment per (rep, workload, engine) closed by ``os.ctermid()``, instructions
per statement = segment total / iterations / statements per iteration; the
order of the engines rotates from rep to rep; medians over ``--layouts``
heap layouts (see that module's docstring for why). A second worker counts
calls with ``sys.setprofile``: which functions the plugin's path calls per
statement that the stock path does not. Only the main thread is counted
(``--separate-threads=yes``): the AWS wrapper's default plugins start
monitoring threads whose work follows the clock, not the statements.

The engines (all ``QueuePool``, the default; the same URL, server and data):

- ``stock``: ``create_engine("postgresql+<driver>://...")``;
- ``aurora``: the same with ``plugins=["orca_db"]`` (default ``aurora={}``);
- ``aws`` / ``aws_none`` (psycopg only, with ``--aws-python``):
  ``postgresql+aws_wrapper_psycopg://...`` with the wrapper's default plugins,
  and with none (``?wrapper_plugins=``). The wrapper is not in
  requirements/dev.txt (it pins boto3 and brings the X-Ray SDK): install it
  into a virtualenv of its own, ``benchmarks/requirements-aws.txt``, whose
  interpreter then runs the psycopg worker, all four engines in one process.

    python -m benchmarks.sqlalchemy_instructions [--quick] [--drivers psycopg,psycopg2]
        [--layouts N] [--aws-python /path/to/venv/bin/python]
"""

from __future__ import annotations

import argparse
import shutil
import sys

from benchmarks import common

ORCA = ("stock", "aurora")
AWS = ("aws", "aws_none")


def _engines(driver: str, aws: bool) -> dict:
    from importlib.metadata import entry_points

    from sqlalchemy import URL, create_engine

    if not entry_points(group="sqlalchemy.plugins", name="orca_db"):
        # A virtualenv with the checkout on its path, orca-db not installed.
        from sqlalchemy.dialects import plugins

        plugins.register("orca_db", "orca_db.sqlalchemy.plugin", "OrcaPlugin")
    info = common.worker_server_info()
    url = URL.create(
        f"postgresql+{driver}",
        username="postgres",
        password=info["password"],
        host="127.0.0.1",
        port=info["port"],
        database="postgres",
    )
    engines = {"stock": create_engine(url), "aurora": create_engine(url, plugins=["orca_db"])}
    if aws:
        wrapped = url.set(drivername="postgresql+aws_wrapper_psycopg")
        engines["aws"] = create_engine(wrapped)
        engines["aws_none"] = create_engine(wrapped.update_query_dict({"wrapper_plugins": ""}))
    return engines


def _aws_plugins(engine) -> list[str]:
    """The wrapper's plugins on one of ``engine``'s connections."""
    with engine.connect() as connection:
        wrapper = connection.connection.dbapi_connection
        manager = getattr(wrapper, "_plugin_manager", None)
        found = getattr(manager, "_plugins", None) or []
        return [type(plugin).__name__ for plugin in found]


def _setup(driver: str, aws: bool):
    from benchmarks import sqlalchemy_workloads as workloads

    engines = _engines(driver, aws)
    workloads.create_table(engines["stock"])
    for function in workloads.WORKLOADS.values():
        for engine in engines.values():
            for _ in range(10):
                function(engine)
    return workloads, engines


def _versions(engines: dict) -> dict:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for name in ("sqlalchemy", "psycopg", "psycopg2-binary", "aws-advanced-python-wrapper"):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = None
    if "aws" in engines:
        found["aws_plugins"] = {alias: _aws_plugins(engines[alias]) for alias in AWS}
    return found


def segments_worker(driver: str, iterations: int, reps: int, aws: bool) -> dict:
    """Run under callgrind: one segment per (rep, workload, engine), in the
    order listed in the result; ``os.ctermid()`` closes each segment."""
    workloads, engines = _setup(driver, aws)
    versions = _versions(engines)
    order = common.run_segments(workloads, engines, iterations, reps)
    return {"driver": driver, "segments": order, "aliases": list(engines), "versions": versions}


def calls_worker(driver: str, iterations: int, aws: bool) -> dict:
    """Count the calls each workload makes per statement, on each engine."""
    workloads, engines = _setup(driver, aws)
    result: dict = {"driver": driver, "iterations": iterations, "workloads": {}}
    for name, function in workloads.WORKLOADS.items():
        counts = {
            alias: common.count_calls(function, engine, iterations)
            for alias, engine in engines.items()
        }
        per = iterations * workloads.STATEMENTS[name]
        result["workloads"][name] = {
            "calls_per_statement": {alias: sum(c.values()) / per for alias, c in counts.items()},
            "difference": common.extra_calls(counts["stock"], counts["aurora"], per),
        }
    return result


def _python_for(driver: str, aws_python: str | None) -> str | None:
    return aws_python if (aws_python and driver == "psycopg") else None


def _worker_args(driver: str, aws_python: str | None) -> list[str]:
    return ["--worker", driver, *(["--aws"] if _python_for(driver, aws_python) else [])]


def measure(driver: str, info: dict, iterations: int, reps: int, layouts: int, aws_python):
    across = common.AcrossLayouts()
    result: dict = {}
    for layout in range(layouts):
        # Only the main thread is counted (separate_threads): the AWS
        # wrapper's monitoring threads run on their own clock.
        result, totals = common.run_under_callgrind(
            "benchmarks.sqlalchemy_instructions",
            [
                *_worker_args(driver, aws_python),
                "--iterations",
                str(iterations),
                "--reps",
                str(reps),
            ],
            info,
            layout=layout,
            timeout=3600,
            separate_threads=True,
            python=_python_for(driver, aws_python),
        )
        across.add(common.per_statement(result["segments"], totals))
    return {
        "driver": driver,
        "iterations": iterations,
        "reps": reps,
        "layouts": layouts,
        "aliases": result.get("aliases"),
        "versions": result.get("versions"),
        "workloads": across.figures(),
    }


def main(argv: list[str] | None = None, server=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    common.add_run_options(parser, "engine")
    parser.add_argument(
        "--aws-python",
        help="a virtualenv's python with aws-advanced-python-wrapper "
        "(benchmarks/requirements-aws.txt): runs the psycopg worker, adding its engines",
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--aws", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--calls", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker and args.calls:
        common.emit(calls_worker(args.worker, args.iterations, args.aws))
        return {}
    if args.worker:
        common.emit(segments_worker(args.worker, args.iterations, args.reps, args.aws))
        return {}
    if not shutil.which("valgrind"):
        raise SystemExit("valgrind is not installed (apt-get install -y valgrind)")
    iterations, reps, drivers, layouts = common.run_settings(args)
    own_server = server is None
    server = server or common.start_server()
    info = common.server_info(server)
    results, calls = {}, {}
    try:
        for driver in drivers:
            results[driver] = measure(driver, info, iterations, reps, layouts, args.aws_python)
            calls[driver] = common.run_worker(
                "benchmarks.sqlalchemy_instructions",
                [*_worker_args(driver, args.aws_python), "--calls", "--iterations", "20"],
                info,
                timeout=600,
                python=_python_for(driver, args.aws_python),
            )
    finally:
        if own_server:
            server.destroy()
    data = {"quick": args.quick, "instructions": results, "calls": calls}
    path = common.save("sqlalchemy_instructions", data)
    print_report(results, calls, layouts)
    print(f"-> {path}")
    return data


def print_report(results: dict, calls: dict, layouts: int) -> None:
    rows = []
    others = [a for a in ("aurora", *AWS) if any(a in r["aliases"] for r in results.values())]
    for driver, result in results.items():
        for name, figures in result["workloads"].items():
            counted = calls[driver]["workloads"][name]["calls_per_statement"]
            row = [driver, name, round(figures["instructions"]["stock"]["median"])]
            for alias in others:
                if alias in figures["ratio"]:
                    row += [
                        round(figures["extra_per_statement"][alias]),
                        f"{figures['ratio'][alias]:.4f}",
                    ]
                else:
                    row += ["-", "-"]
            row.append("/".join(f"{counted[a]:.0f}" for a in ("stock", *others) if a in counted))
            rows.append(row)
    headers = ["driver", "workload", "stock Ir"]
    for alias in others:
        headers += [f"{alias} extra", f"{alias} ratio"]
    headers.append("calls " + "/".join(("stock", *others)))
    print("SQLAlchemy per-statement overhead (instructions, client process, callgrind)")
    print(common.table(headers, rows))
    for driver, result in results.items():
        if result.get("versions"):
            print(f"{driver} worker: {result['versions']}")
    if layouts > 1:
        print(f"\nExtra per statement in each of the {layouts} heap layouts (the spread is noise):")
        for driver, result in results.items():
            for name, figures in result["workloads"].items():
                values = "; ".join(
                    f"{alias} " + ", ".join(str(round(v)) for v in values)
                    for alias, values in figures["extra_per_layout"].items()
                )
                print(f"  {driver} {name}: {values}")
    common.print_extra_calls(calls, "the plugin's path")


if __name__ == "__main__":
    main(sys.argv[1:])
