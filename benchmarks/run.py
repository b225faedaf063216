"""Run every benchmark, print its table, write benchmarks/results/*.json.

    python -m benchmarks.run            # the full set (about 25 minutes)
    python -m benchmarks.run --quick    # a smoke run (about 2 minutes)
    python -m benchmarks.run --only overhead,connect

``--quick`` leaves out the callgrind counts (``instructions``, and the
cold-start counts), which take minutes under valgrind; run
``python -m benchmarks.instructions --quick`` for a smoke run of those.
"""

from __future__ import annotations

import argparse
import sys
import time
import traceback

from benchmarks import (
    coldstart,
    common,
    connect,
    fleet,
    instructions,
    overhead,
    recovery,
    throughput,
)

BENCHMARKS = {
    "overhead": overhead.main,
    "instructions": instructions.main,
    "connect": connect.main,
    "coldstart": coldstart.main,
    "recovery": recovery.main,
    "throughput": throughput.main,
    "fleet": fleet.main,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    parser.add_argument("--only", help=f"comma-separated, from: {', '.join(BENCHMARKS)}")
    args = parser.parse_args(argv)
    names = args.only.split(",") if args.only else list(BENCHMARKS)
    if args.quick and not args.only:
        names.remove("instructions")
    unknown = set(names) - set(BENCHMARKS)
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(sorted(unknown))}")
    server = common.start_server()
    failed = []
    try:
        for name in names:
            started = time.monotonic()
            print(f"\n== {name}", flush=True)
            try:
                BENCHMARKS[name](["--quick"] if args.quick else [], server=server)
            except Exception:
                traceback.print_exc()
                failed.append(name)
            print(f"({name}: {time.monotonic() - started:.0f} s)", flush=True)
    finally:
        server.destroy()
    if failed:
        print(f"\nFAILED: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
