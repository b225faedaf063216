"""Ports of the test servers are reserved across processes
(orca_db/testing/ports.py): two runs on one machine (CI runs the README
suite beside a nox session) never start servers on each other's ports,
even while one of them has stopped its server to start it again.

Driven from the outside: other processes pick ports as another run would,
by count, while this one holds its ports."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from orca_db.testing.data_api import DataApiEndpoint
from orca_db.testing.ports import try_reserve
from orca_db.testing.postgres import PostgresServer, connect_driver

ROOT = Path(__file__).resolve().parent.parent

# Another run: takes `count` ports with free_port() and keeps them (prints
# them once it has them all) until its standard input closes.
HOLD = """
import json, resource, sys
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (min(max(soft, 4096), hard), hard))
from orca_db.testing.postgres import free_port
ports = [free_port() for _ in range(int(sys.argv[1]))]
print(json.dumps(ports), flush=True)
sys.stdin.read()
"""

# Another run asking for `port` (as its reserve_port() does for each port
# bind(0) offers it); prints whether it got it.
ASK = """
import sys
from orca_db.testing.data_api import DataApiEndpoint
from orca_db.testing.ports import try_reserve
print(try_reserve(int(sys.argv[1])) is not None, flush=True)
"""


def _python(code: str, *args: object, **kwargs) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", code, *map(str, args)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        text=True,
        **kwargs,
    )


def test_two_runs_never_hold_the_same_port():
    # 400 ports each of ~14,000 bind(0) gives out (Linux: odd ports of
    # 32768-60999): ports picked without a reservation share about 11.
    count = 400
    runs = [_python(HOLD, count, stdin=subprocess.PIPE, stdout=subprocess.PIPE) for _ in "ab"]
    try:
        held = [json.loads(run.stdout.readline()) for run in runs]  # both hold theirs now
    finally:
        for run in runs:
            run.stdin.close()
            run.wait(timeout=60)
    assert all(len(set(ports)) == count for ports in held)
    assert set(held[0]).isdisjoint(held[1])


def test_a_stopped_server_keeps_its_port_until_it_starts_again(postgres_server):
    port = postgres_server.port
    postgres_server.stop()
    # Another run, while this server is down, is refused its port.
    ask = _python(ASK, port, stdout=subprocess.PIPE)
    out, _ = ask.communicate(timeout=60)
    assert (ask.returncode, out) == (0, "False\n")
    postgres_server.start()
    assert postgres_server.port == port
    conn = connect_driver(
        host="127.0.0.1", port=port, user=postgres_server.superuser,
        password=postgres_server.password, dbname="postgres",
    )  # fmt: skip
    try:
        cur = conn.cursor()
        cur.execute("SELECT current_setting('data_directory')")
        assert cur.fetchone()[0] == str(postgres_server.datadir)
    finally:
        conn.close()


def test_a_destroyed_server_gives_its_port_back():
    server = PostgresServer().start()
    port = server.port
    assert try_reserve(port) is None
    server.destroy()
    reservation = try_reserve(port)
    assert reservation is not None
    reservation.release()


def test_a_killed_run_holds_nothing():
    run = _python(HOLD, 3, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    ports = json.loads(run.stdout.readline())
    assert [try_reserve(port) for port in ports] == [None] * 3
    os.kill(run.pid, signal.SIGKILL)
    run.wait(timeout=60)
    run.stdin.close()
    run.stdout.close()
    reservations = [try_reserve(port) for port in ports]
    assert None not in reservations
    for reservation in reservations:
        reservation.release()


def test_the_data_api_endpoint_holds_its_port_from_start_to_stop():
    # Released at stop(): the object may outlive it (a keep-alive client
    # keeps a handler thread); a start() after it takes the same port.
    endpoint = DataApiEndpoint("127.0.0.1", 5432, "postgres", "unused").start()
    port = endpoint.listen_port
    try:
        assert try_reserve(port) is None
    finally:
        endpoint.stop()
    reservation = try_reserve(port)
    assert reservation is not None
    reservation.release()
    endpoint.start()
    try:
        assert endpoint.listen_port == port
        assert try_reserve(port) is None
    finally:
        endpoint.stop()
