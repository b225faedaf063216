#!/usr/bin/env python
"""When does a Lambda handler see RetriesExhausted, against a paused cluster?

A host that accepts TCP connections and never answers stands for a paused
Aurora cluster holding connections while it resumes. A ``database_handler``
with 3 s remaining does some work (``--offsets``, seconds) and then connects;
the table shows when ``RetriesExhausted`` arrived, per margin, and whether it
came before Lambda's timeout. libpq and psycopg 3 never wait less than 2 s per
connection attempt; with less than that left, orca-db bounds the attempt
itself (orca_db.deadlines.bounded_connect)::

    python benchmarks/lambda_deadline.py
    ORCA_DB_DRIVER=psycopg2 python benchmarks/lambda_deadline.py
"""

from __future__ import annotations

import argparse
import contextlib
import socket
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests import driver  # noqa: E402  (ORCA_DB_DRIVER=psycopg2 hides psycopg 3)


class FakeContext:
    aws_request_id = "benchmark"

    def __init__(self, remaining_ms: int):
        self._ends_at = time.monotonic() + remaining_ms / 1000

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._ends_at - time.monotonic()) * 1000))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--remaining-ms", type=int, default=3000)
    parser.add_argument("--margins", default="1000,2500")
    parser.add_argument("--offsets", default="0,0.5,1.0,1.5")
    args = parser.parse_args()

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    import django
    from django.conf import settings

    settings.configure(
        DATABASES={
            "default": {
                "ENGINE": "orca_db.backends.aurora",
                "NAME": "paused",
                "USER": "nobody",
                "PASSWORD": "unused",
                "HOST": "127.0.0.1",
                "PORT": str(listener.getsockname()[1]),
            }
        },
        INSTALLED_APPS=[],
    )
    django.setup()
    from django.db import connection

    from orca_db.aws_lambda import database_handler
    from orca_db.exceptions import RetriesExhausted

    # Warm up: the first connect imports the driver and Django's backend.
    with contextlib.suppress(RetriesExhausted):
        database_handler(lambda event, context: connection.ensure_connection())(
            {}, FakeContext(100)
        )
    print(f"driver: {driver.DRIVER}, remaining: {args.remaining_ms} ms, silent host")
    print(f"{'margin ms':>9} {'work s':>7} {'raised after s':>15} {'before timeout':>15}")
    for margin in (int(m) for m in args.margins.split(",")):
        for offset in (float(o) for o in args.offsets.split(",")):

            @database_handler(margin_ms=margin)
            def handler(event, context, offset=offset):
                time.sleep(offset)  # the handler's own work before its first query
                connection.ensure_connection()

            started = time.monotonic()
            outcome = "no error"
            try:
                handler({}, FakeContext(args.remaining_ms))
            except RetriesExhausted:
                outcome = "RetriesExhausted"
            elapsed = time.monotonic() - started
            in_time = "yes" if elapsed < args.remaining_ms / 1000 else "NO"
            print(f"{margin:>9} {offset:>7.1f} {elapsed:>15.2f} {in_time:>15}  {outcome}")
    listener.close()


if __name__ == "__main__":
    main()
