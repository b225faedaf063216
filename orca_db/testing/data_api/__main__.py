"""The local Data API endpoint from the command line::

    python -m orca_db.testing.data_api --upstream 127.0.0.1:5432 --user postgres \\
        --password secret --listen 8081

It prints the environment that points boto3 at it, then reads commands on
standard input (``pause [N]``, ``resume``, ``scale``, ``lose [N]``,
``throttle [N]``, ``stats``, ``quit``) until end of input or SIGTERM.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys

from .endpoint import DataApiEndpoint

_COMMANDS = """\
commands (one per line on stdin):
  pause [CALLS]     answer DatabaseResumingException (until resume, or for CALLS calls)
  resume            serve again
  scale             scale event: end every open transaction
  lose [N]          run the next N calls, never answer them
  throttle [N]      answer ThrottlingException to the next N calls
  stats             print the counters
  quit              stop"""


def _run(endpoint: DataApiEndpoint, line: str) -> bool:
    words = line.split()
    if not words:
        return True
    command, count = words[0].lower(), int(words[1]) if len(words) > 1 else None
    if command in ("quit", "exit", "stop"):
        return False
    if command == "pause":
        endpoint.pause(calls=count)
    elif command == "resume":
        endpoint.resume()
    elif command == "scale":
        print(f"ended {endpoint.scale_event()} transactions", flush=True)
    elif command == "lose":
        endpoint.lose_replies(count or 1)
    elif command == "throttle":
        endpoint.fail_next(count or 1)
    elif command != "stats":
        print(_COMMANDS, flush=True)
        return True
    print(json.dumps(endpoint.stats), flush=True)
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m orca_db.testing.data_api",
        description=(
            "A local RDS Data API endpoint in front of a real PostgreSQL, for the Data API "
            "engine's tests and demos. It prints the environment that points boto3 at it, "
            "then reads commands on standard input until end of input or SIGTERM."
        ),
        epilog=_COMMANDS,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--upstream",
        default="127.0.0.1:5432",
        metavar="HOST:PORT",
        help="the real PostgreSQL (default: %(default)s)",
    )
    parser.add_argument(
        "--user",
        default="postgres",
        help="the PostgreSQL role the endpoint connects as, which the secret stands "
        "for (default: %(default)s)",
    )
    parser.add_argument(
        "--password",
        default=os.environ.get("PGPASSWORD", ""),
        help="that role's password (default: $PGPASSWORD)",
    )
    parser.add_argument(
        "--listen",
        type=int,
        default=0,
        metavar="PORT",
        help="port on 127.0.0.1 (default: 0, any free port; printed at start)",
    )
    args = parser.parse_args(argv)
    host, _, port = args.upstream.rpartition(":")
    endpoint = DataApiEndpoint(host or "127.0.0.1", int(port), args.user, args.password)
    endpoint.listen_port = args.listen
    endpoint.start()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        for name, value in endpoint.environ().items():
            print(f"export {name}={value}", flush=True)
        print(f"# cluster_arn {endpoint.cluster_arn}\n# secret {endpoint.secret_arn}", flush=True)
        for line in sys.stdin:
            if not _run(endpoint, line):
                break
    except KeyboardInterrupt:
        pass
    finally:
        endpoint.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
