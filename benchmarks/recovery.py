"""Recovery latency: how long after the database is back a client looping
on ``SELECT 1`` through the aurora backend (default retry settings) gets
its first successful answer.

Outages:

- ``restart``: the server is stopped (``pg_ctl stop -m fast``: clients get
  FATAL 57P01) and started again after a random 0.3-1.2 s. "Back" is the
  instant the server logs "database system is ready to accept connections"
  (its log has millisecond timestamps).
- ``pause``: the Aurora simulator (``orca_db.testing.simulator``) paused
  as Aurora pauses a cluster, with no session open (the client connects per
  request, ``CONN_MAX_AGE=0``): new connections are held until ``resume()``;
  "back" is the instant ``resume()`` returns.
- ``pause_storm``: the same, but every connection made while paused fails
  at once (``pause(storm=1.0)``), so the client's backoff decides how soon
  after the resume it tries again.

The client runs in its own process (one per driver); it and the controller
share ``time.monotonic()`` (one clock for the whole machine on Linux).

    python -m benchmarks.recovery [--quick] [--trials N] [--outages restart,pause]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks import common

READY = "database system is ready to accept connections"


# ----- the client (worker process) ---------------------------------------------


def client(
    driver: str,
    stop_file: str,
    out_file: str,
    port: int,
    deadline: float,
    options: dict,
    per_request: bool,
) -> None:
    """Loop on SELECT 1 until ``stop_file`` exists; write the monotonic
    instants of successes and failures to ``out_file``. ``per_request``:
    close the connection after each query (``CONN_MAX_AGE=0``)."""
    info = {**common.worker_server_info(), "port": port}
    aurora = common.database(common.AURORA_ENGINE, info, OPTIONS={"aurora": options})
    common.setup_django(driver, {"default": aurora})
    from django.db import connection

    successes: list[float] = []
    failures: list[list] = []
    stop_at = time.monotonic() + deadline
    stop = Path(stop_file)
    ready = Path(out_file + ".ready")
    n = 0
    while time.monotonic() < stop_at:
        n += 1
        if n % 20 == 0 and stop.exists():
            break
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1")
                cursor.fetchone()
        except Exception as error:  # the retry layer gave up: record, go on
            failures.append([time.monotonic(), type(error).__name__, str(error)[:200]])
            connection.close()
        else:
            successes.append(time.monotonic())
            if n == 1:
                ready.touch()
        if per_request:
            connection.close()
        time.sleep(0.002)
    Path(out_file).write_text(
        json.dumps(
            {
                "driver": common.driver_in_use(),
                "successes": successes,
                "failures": failures,
            }
        )
    )


class Client:
    """A client worker process, started and stopped by the controller."""

    def __init__(
        self,
        driver: str,
        info: dict,
        port: int,
        deadline: float,
        options: dict,
        per_request: bool = False,
    ):
        self.directory = Path(tempfile.mkdtemp(prefix="orca-bench-recovery-"))
        self.stop_file = self.directory / "stop"
        self.out_file = self.directory / "out.json"
        env = {**os.environ, common.SERVER_ENV: json.dumps(info), "PYTHONHASHSEED": "0"}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.recovery", "--client", driver]
            + ["--stop-file", str(self.stop_file), "--out-file", str(self.out_file)]
            + ["--port", str(port), "--deadline", str(deadline)]
            + ["--aurora-options", json.dumps(options)]
            + (["--per-request"] if per_request else []),
            cwd=common.ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        wait_for(lambda: Path(str(self.out_file) + ".ready").exists() or self._died(), 60)
        if self._died():
            raise RuntimeError(f"recovery client failed:\n{self.process.stderr.read()[-3000:]}")

    def _died(self) -> bool:
        return self.process.poll() is not None

    def finish(self) -> dict:
        self.stop_file.touch()
        try:
            _, err = self.process.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise
        if self.process.returncode != 0:
            raise RuntimeError(f"recovery client failed:\n{err[-3000:]}")
        return json.loads(self.out_file.read_text())


def wait_for(condition, timeout: float, interval: float = 0.01) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"condition not met within {timeout} s")
        time.sleep(interval)


# ----- outages (controller) -------------------------------------------------------


def _log_ready_instants(server) -> list[float]:
    """Monotonic instants of every "ready to accept connections" in the log."""
    offset = time.time() - time.monotonic()
    instants = []
    for line in server.logfile.read_text(errors="replace").splitlines():
        if READY in line:
            stamp = " ".join(line.split(" ", 3)[:3])  # 2026-01-01 10:00:00.123 UTC
            when = datetime.datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S.%f %Z")
            when = when.replace(tzinfo=datetime.UTC)
            instants.append(when.timestamp() - offset)
    return instants


def restart_trials(driver: str, info: dict, trials: int, deadline: float, options: dict) -> dict:
    from orca_db.testing.postgres import PostgresServer

    # A server of its own: stopping the shared one would disturb others.
    server = PostgresServer().start()
    own = {**info, "port": server.port, "password": server.password}
    rng = random.Random(9)
    outages = []
    try:
        client_process = Client(driver, own, server.port, deadline, options)
        stop_at = time.monotonic() + deadline - 10
        for _ in range(trials):
            if time.monotonic() > stop_at:
                break
            time.sleep(0.3 + rng.random() * 0.2)  # let the client settle
            stopped = time.monotonic()
            server.stop("fast")
            time.sleep(rng.uniform(0.3, 1.2))
            server.start()
            outages.append({"stopped": stopped, "back": _log_ready_instants(server)[-1]})
            time.sleep(0.6)  # > backoff_max: the client is through
        result = client_process.finish()
    finally:
        server.destroy()
    return _latencies(result, outages)


def pause_trials(
    driver: str, info: dict, trials: int, deadline: float, options: dict, storm: float = 0.0
) -> dict:
    """A paused cluster, as Aurora pauses one: with no session open (the
    client connects per request). While paused, new connections are held
    until resume (``storm=0``) or fail at once (``storm=1``: the client's
    backoff decides when it tries again)."""
    from orca_db.testing.simulator import AuroraSimulator

    simulator = AuroraSimulator("127.0.0.1", info["port"]).start()
    rng = random.Random(9)
    outages = []
    try:
        client_process = Client(driver, info, simulator.port, deadline, options, per_request=True)
        stop_at = time.monotonic() + deadline - 10
        for _ in range(trials):
            if time.monotonic() > stop_at:
                break
            time.sleep(0.3 + rng.random() * 0.2)
            stopped = time.monotonic()
            simulator.pause(storm=storm)
            time.sleep(rng.uniform(0.3, 1.2))
            simulator.resume()
            outages.append({"stopped": stopped, "back": time.monotonic()})
            time.sleep(0.6)
        result = client_process.finish()
        stats = dict(simulator.stats)
    finally:
        simulator.stop()
    return {**_latencies(result, outages), "simulator_stats": stats}


def _latencies(result: dict, outages: list[dict]) -> dict:
    successes = result["successes"]
    latencies, trials = [], []
    for outage in outages:
        first = next((t for t in successes if t > outage["back"]), None)
        # Successes during the outage would mean it was no outage at all.
        during = sum(1 for t in successes if outage["stopped"] + 0.05 < t < outage["back"])
        latency_ms = None if first is None else (first - outage["back"]) * 1000
        trials.append(
            {
                "outage_s": outage["back"] - outage["stopped"],
                "latency_ms": latency_ms,
                "successes_during": during,
            }
        )
        if latency_ms is not None:
            latencies.append(latency_ms)
    return {
        "driver": result["driver"],
        "trials": trials,
        "latency_ms": common.summary(latencies),
        "latencies_ms": latencies,
        "client_failures": result["failures"][:20],
        "client_failure_count": len(result["failures"]),
    }


def pause_storm_trials(
    driver: str, info: dict, trials: int, deadline: float, options: dict
) -> dict:
    return pause_trials(driver, info, trials, deadline, options, storm=1.0)


SCENARIOS = {"restart": restart_trials, "pause": pause_trials, "pause_storm": pause_storm_trials}


def main(argv: list[str] | None = None, server=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    parser.add_argument("--trials", type=int, help="outages per scenario and driver")
    parser.add_argument("--outages", default=",".join(SCENARIOS))
    parser.add_argument("--drivers", default=",".join(common.DRIVERS))
    parser.add_argument("--client", help=argparse.SUPPRESS)
    parser.add_argument("--stop-file", help=argparse.SUPPRESS)
    parser.add_argument("--out-file", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--deadline", type=float, default=300, help=argparse.SUPPRESS)
    parser.add_argument("--per-request", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument(
        "--aurora-options",
        default="{}",
        help='OPTIONS["aurora"] of the client, as JSON (default: the defaults), '
        "e.g. '{\"backoff_max\": 0.15}'",
    )
    args = parser.parse_args(argv)
    options = json.loads(args.aurora_options)
    if args.client:
        client(
            args.client,
            args.stop_file,
            args.out_file,
            args.port,
            args.deadline,
            options,
            args.per_request,
        )
        return {}

    trials = args.trials or (3 if args.quick else 20)
    deadline = 40 if args.quick else 30 + trials * 2.5
    own_server = server is None
    server = server or common.start_server()
    results: dict = {}
    try:
        for outage in args.outages.split(","):
            results[outage] = {}
            for driver in args.drivers.split(","):
                try:
                    results[outage][driver] = SCENARIOS[outage](
                        driver, common.server_info(server), trials, deadline, options
                    )
                except ImportError as error:
                    results[outage][driver] = {"not_measured": str(error)}
    finally:
        if own_server:
            server.destroy()
    rows = []
    for outage, by_driver in results.items():
        for driver, result in by_driver.items():
            if "not_measured" in result:
                rows.append([outage, driver, "-", "-", "-", "-", "-", result["not_measured"]])
                continue
            figures = result["latency_ms"]
            rows.append(
                [
                    outage,
                    driver,
                    figures.get("n", 0),
                    figures.get("median"),
                    f"{figures.get('q1', 0):.0f}-{figures.get('q3', 0):.0f}",
                    figures.get("min"),
                    figures.get("max"),
                    result["client_failure_count"],
                ]
            )
    print(
        "Recovery latency (ms from the database being back to the first answer; "
        f"OPTIONS['aurora'] = {options or 'defaults'})"
    )
    print(
        common.table(
            ["outage", "driver", "n", "median", "IQR", "min", "max", "client errors"], rows
        )
    )
    data = {"quick": args.quick, "aurora_options": options, "results": results}
    suffix = "" if not options else "-" + "-".join(f"{k}{v}" for k, v in sorted(options.items()))
    path = common.save("recovery" + suffix, data)
    print(f"-> {path}")
    return data


if __name__ == "__main__":
    main(sys.argv[1:])
