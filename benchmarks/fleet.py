"""Fleet: a resume storm. Many clients (threads in a few worker processes)
loop on requests through the Aurora simulator, in front of a real
PostgreSQL, with a connection limit; the simulator pauses for several
seconds, then resumes: every client connects at once, those over the limit
get FATAL 53300 "sorry, too many clients already".

Each client loops: connect (Django's ``connection``, ``CONN_MAX_AGE=0``),
``SELECT 1``, close, then think (a random 1-3 s, so the fleet's steady rate
is well under what the machine serves), until the run ends. Clients differ
only in what they do about an error:

- ``stock``: Django's backend, no retry. The error surfaces, the request
  fails (counted), the client thinks and makes its next request.
- ``naive``: Django's backend and the retry loop people write by hand: on
  any error, sleep 0.1 s and try again, until the request's deadline.
- ``orca``: ``orca_db.backends.aurora`` with default settings (whatever
  backoff it has). Each request runs in ``orca_db.aws_lambda.invocation``
  with a context whose remaining time is the deadline, as a Lambda function
  would: retries stop before it.

Every request has a 30 s deadline. Measured per configuration: time from
``resume()`` until every client has been served once; connection attempts
per second at the proxy (peak over any 1 s window after the resume, mean
until everyone is served), sampled every 0.1 s; errors surfaced to the
client code, by kind; clients not served within the deadline after the
resume (must be 0 for orca-db). Traffic goes only to 127.0.0.1; every loop
is bounded.

    python -m benchmarks.fleet [--quick] [--clients 64,256] [--kinds stock,naive,orca]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from benchmarks import common

KINDS = ("stock", "naive", "orca")
SAMPLE_EVERY = 0.1
NAIVE_RETRY_EVERY = 0.1


# ----- the clients (worker process) -----------------------------------------------


class Deadline:
    """A Lambda context's time left, for ``orca_db.aws_lambda.invocation``."""

    aws_request_id = None

    def __init__(self, at: float):
        self.at = at

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.at - time.monotonic()) * 1000))


def category(error: BaseException) -> str:
    """What kind of error the client code saw: its class and, for the
    driver's OperationalError, what the text says."""
    text = f"{error} {error.__cause__ or ''}"
    for fragment, label in (
        ("too many clients", "53300 too many clients"),
        ("starting up", "57P03 starting up"),
        ("server closed the connection", "disconnected"),
        ("timeout expired", "connect timeout"),
        ("Connection refused", "refused"),
    ):
        if fragment in text:
            return f"{type(error).__name__}: {label}"
    return type(error).__name__


def worker(args: argparse.Namespace) -> None:
    engine = common.AURORA_ENGINE if args.worker == "orca" else common.STOCK_ENGINE
    info = {**common.worker_server_info(), "port": args.port}
    common.setup_django(args.driver, {"default": common.database(engine, info, CONN_MAX_AGE=0)})
    from django.db import connection

    invocation = None
    if args.worker == "orca":
        from orca_db.aws_lambda import invocation

    directory = Path(args.dir)
    go, stop = threading.Event(), threading.Event()
    think_low, think_high = args.think
    clients: list[dict] = [{"requests": [], "errors": []} for _ in range(args.threads)]

    def attempt() -> None:
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1")
                cursor.fetchone()
        finally:
            connection.close()

    def request(record: dict, deadline: float) -> bool:
        while True:
            try:
                if invocation is not None:
                    with invocation(Deadline(deadline)):
                        attempt()
                else:
                    attempt()
                return True
            except Exception as error:  # what surfaces to the application
                record["errors"].append([time.monotonic(), category(error)])
                retry_at = time.monotonic() + NAIVE_RETRY_EVERY
                if args.worker != "naive" or retry_at > deadline or stop.is_set():
                    return False
                time.sleep(NAIVE_RETRY_EVERY)

    def client(number: int) -> None:
        record = clients[number]
        rng = random.Random(args.index * 100_000 + number)
        go.wait()
        if stop.wait(rng.uniform(0, think_high)):  # spread the fleet's start
            return
        while not stop.is_set():
            started = time.monotonic()
            ok = request(record, started + args.deadline)
            record["requests"].append([started, time.monotonic(), ok])
            if stop.wait(rng.uniform(think_low, think_high)):
                return

    threads = [threading.Thread(target=client, args=(n,), daemon=True) for n in range(args.threads)]
    for thread in threads:
        thread.start()
    (directory / f"ready-{args.index}").touch()
    hard_stop = time.monotonic() + args.run_limit
    while not (directory / "go").exists():
        if time.monotonic() > hard_stop:
            raise SystemExit("no go signal")
        time.sleep(0.01)
    go.set()
    while any(thread.is_alive() for thread in threads):
        if (directory / "stop").exists() or time.monotonic() > hard_stop:
            stop.set()
        _write_progress(directory, args.index, clients)
        time.sleep(SAMPLE_EVERY)
    result = {"driver": common.driver_in_use(), "clients": clients}
    (directory / f"worker-{args.index}.json").write_text(json.dumps(result))


def _write_progress(directory: Path, index: int, clients: list[dict]) -> None:
    """How many of this worker's clients were served since the resume."""
    resumed = directory / "resumed"
    if not resumed.exists():
        return
    resumed_at = float(resumed.read_text())
    served = sum(
        1 for c in clients if any(ok and end > resumed_at for _, end, ok in list(c["requests"]))
    )
    progress = directory / f"progress-{index}"
    progress.with_suffix(".tmp").write_text(str(served))
    progress.with_suffix(".tmp").replace(progress)


# ----- the controller ---------------------------------------------------------------


class Sampler(threading.Thread):
    """Reads the simulator's counters every 0.1 s."""

    def __init__(self, simulator):
        super().__init__(daemon=True)
        self.simulator = simulator
        self.samples: list[tuple[float, dict[str, int]]] = []
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(SAMPLE_EVERY):
            self.samples.append((time.monotonic(), self.simulator.stats))


def run_fleet(kind: str, driver: str, clients: int, info: dict, settings: argparse.Namespace):
    from orca_db.testing.simulator import AuroraSimulator

    directory = Path(tempfile.mkdtemp(prefix="orca-bench-fleet-"))
    processes = min(settings.processes, clients)
    shares = [clients // processes + (i < clients % processes) for i in range(processes)]
    simulator = AuroraSimulator("127.0.0.1", info["port"]).start()
    simulator.limit_connections(settings.limit)
    env = {**os.environ, common.SERVER_ENV: json.dumps(info), "PYTHONHASHSEED": "0"}
    run_limit = settings.steady + settings.pause + settings.deadline * 2 + 60
    workers = []
    try:
        for index, threads in enumerate(shares):
            command = [sys.executable, "-m", "benchmarks.fleet", "--worker", kind]
            command += ["--driver", driver, "--threads", str(threads), "--index", str(index)]
            command += ["--port", str(simulator.port), "--dir", str(directory)]
            command += ["--deadline", str(settings.deadline), "--run-limit", str(run_limit)]
            command += ["--think", *map(str, settings.think)]
            log = open(directory / f"worker-{index}.log", "w")  # noqa: SIM115
            workers.append(
                subprocess.Popen(command, cwd=common.ROOT, env=env, stdout=log, stderr=log)
            )
        _wait(lambda: all((directory / f"ready-{i}").exists() for i in range(processes)), workers)
        sampler = Sampler(simulator)
        sampler.start()
        started = time.monotonic()
        (directory / "go").touch()
        time.sleep(settings.steady)
        paused = time.monotonic()
        simulator.pause()
        time.sleep(settings.pause)
        simulator.resume()
        resumed = time.monotonic()
        (directory / "resumed").write_text(repr(resumed))
        served = lambda: sum(  # noqa: E731
            int(p.read_text() or 0) for p in directory.glob("progress-*") if p.suffix != ".tmp"
        )
        give_up = resumed + settings.deadline + 5
        while served() < clients and time.monotonic() < give_up:
            time.sleep(0.05)
        time.sleep(settings.tail)
        (directory / "stop").touch()
        for process in workers:
            process.wait(timeout=settings.deadline + 60)
        sampler.done.set()
        sampler.join()
        stats = simulator.stats
    finally:
        simulator.stop()
        for process in workers:
            if process.poll() is None:
                process.kill()
                process.wait()
    outputs = []
    for index, process in enumerate(workers):
        result = directory / f"worker-{index}.json"
        if process.returncode != 0 or not result.exists():
            log = (directory / f"worker-{index}.log").read_text()[-3000:]
            raise RuntimeError(f"fleet worker {index} failed ({process.returncode}):\n{log}")
        outputs.append(json.loads(result.read_text()))
    shutil.rmtree(directory, ignore_errors=True)  # kept when a worker failed
    timeline = {"started": started, "paused": paused, "resumed": resumed}
    return summarize(outputs, sampler.samples, timeline, stats, shares, settings)


def _wait(condition, workers: list[subprocess.Popen], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if any(p.poll() is not None for p in workers) or time.monotonic() > deadline:
            raise RuntimeError("fleet workers did not start (see their logs)")
        time.sleep(0.02)


def summarize(outputs, samples, timeline, stats, shares, settings) -> dict:
    resumed = timeline["resumed"]
    clients = [c for output in outputs for c in output["clients"]]
    first_served = []
    for client in clients:
        ends = [end for _, end, ok in client["requests"] if ok and end > resumed]
        first_served.append(min(ends) - resumed if ends else None)
    waits = [w for w in first_served if w is not None]
    missed = sum(1 for w in first_served if w is None or w > settings.deadline)
    served_all = max(waits) if len(waits) == len(clients) else None
    errors: dict[str, int] = {}
    for client in clients:
        for _, kind in client["errors"]:
            errors[kind] = errors.get(kind, 0) + 1
    requests = [r for c in clients for r in c["requests"]]
    # Attempts per second at the proxy, from the sampled counter.
    series = []
    for (t0, s0), (t1, s1) in zip(samples, samples[1:], strict=False):
        series.append((t1 - resumed, (s1["connections"] - s0["connections"]) / (t1 - t0)))
    after = [(t, rate) for t, rate in series if t > 0]
    window = int(round(1 / SAMPLE_EVERY))
    peak = max(
        (sum(r for _, r in after[i : i + window]) / window for i in range(len(after))), default=0
    )
    # The storm: from the resume until every client has been served, at
    # least 1 s (so that its mean and the 1 s peak compare).
    storm_end = max(1.0, served_all if served_all is not None else after[-1][0] if after else 0)
    in_storm = [rate for t, rate in after if t <= storm_end + 1e-9]
    steady = [rate for t, rate in series if t < timeline["paused"] - resumed]
    return {
        "driver": outputs[0]["driver"],
        "clients": len(clients),
        "threads_per_process": shares,
        "served_all_s": served_all,
        "first_served_s": common.summary(waits),
        "missed_deadline": missed,
        "requests": len(requests),
        "requests_failed": sum(1 for _, _, ok in requests if not ok),
        "late_requests": sum(1 for s, e, ok in requests if ok and e - s > settings.deadline),
        "errors": dict(sorted(errors.items(), key=lambda item: -item[1])),
        "attempts_per_s": {
            "steady_mean": sum(steady) / len(steady) if steady else None,
            "storm_peak": peak,
            "storm_mean": sum(in_storm) / len(in_storm) if in_storm else None,
            "storm_total": sum(in_storm) * SAMPLE_EVERY,
            "storm_s": storm_end,
        },
        "series": [[round(t, 2), round(rate, 1)] for t, rate in series],
        "timeline_s": {name: at - resumed for name, at in timeline.items()},
        "simulator_stats": stats,
    }


# ----- main -------------------------------------------------------------------------


def main(argv: list[str] | None = None, server=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    parser.add_argument("--clients", help="fleet sizes, e.g. 64,256")
    parser.add_argument("--kinds", default=",".join(KINDS))
    parser.add_argument("--drivers", help="default: psycopg2 (--quick), both otherwise")
    parser.add_argument("--processes", type=int, default=4, help="worker processes per fleet")
    parser.add_argument("--limit", type=int, help="connection limit (default 50; --quick 10)")
    parser.add_argument("--pause", type=float, help="seconds paused (default 5; --quick 2)")
    parser.add_argument("--deadline", type=float, default=30.0, help="per request (seconds)")
    parser.add_argument("--worker", choices=KINDS, help=argparse.SUPPRESS)
    parser.add_argument("--driver", help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--index", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--dir", help=argparse.SUPPRESS)
    parser.add_argument("--run-limit", type=float, default=300, help=argparse.SUPPRESS)
    parser.add_argument("--think", type=float, nargs=2, default=(1.0, 3.0), help=argparse.SUPPRESS)
    parser.add_argument("--table", help="print the table of a saved result file and stop")
    args = parser.parse_args(argv)
    if args.worker:
        worker(args)
        return {}
    if args.table:
        saved = json.loads(Path(args.table).read_text())
        print(common.table(HEADERS, [row(*each) for each in _each(saved["results"])]))
        return saved
    quick = args.quick
    args.clients = [int(n) for n in (args.clients or ("32" if quick else "64,256")).split(",")]
    args.limit = args.limit or (10 if quick else 50)
    args.pause = args.pause or (2.0 if quick else 5.0)
    args.steady, args.tail = (1.0, 1.0) if quick else (3.0, 2.0)
    if quick:
        args.think = (0.5, 1.5)
    drivers = (args.drivers or ("psycopg2" if quick else ",".join(common.DRIVERS))).split(",")
    kinds = args.kinds.split(",")
    own_server = server is None
    server = server or common.start_server()
    results: dict = {}
    try:
        for clients in args.clients:
            for driver in drivers:
                for kind in kinds:
                    name = f"{clients} clients / {driver} / {kind}"
                    print(f"  {name} ...", flush=True)
                    result = run_fleet(kind, driver, clients, common.server_info(server), args)
                    results.setdefault(str(clients), {}).setdefault(driver, {})[kind] = result
    finally:
        if own_server:
            server.destroy()
    print(
        f"Fleet through a {args.pause:g} s pause, connection limit {args.limit}, "
        f"deadline {args.deadline:g} s ({args.processes} processes)"
    )
    print(common.table(HEADERS, [row(c, d, k, r) for c, d, k, r in _each(results)]))
    data = {
        "quick": quick,
        "settings": {
            "limit": args.limit,
            "pause_s": args.pause,
            "deadline_s": args.deadline,
            "processes": args.processes,
            "think_s": list(args.think),
            "steady_s": args.steady,
            "naive_retry_every_s": NAIVE_RETRY_EVERY,
        },
        "results": results,
    }
    path = common.save("fleet" + ("-quick" if quick else ""), data)
    print(f"-> {path}")
    return data


HEADERS = [
    "clients", "driver", "client", "all served (s)", "median (s)", "missed deadline",
    "attempts/s peak", "mean", "steady", "refused (53300)", "errors seen", "requests failed",
]  # fmt: skip


def _each(results: dict):
    for clients, by_driver in results.items():
        for driver, by_kind in by_driver.items():
            for kind, result in by_kind.items():
                yield clients, driver, kind, result


def row(clients: str, driver: str, kind: str, result: dict) -> list:
    attempts = result["attempts_per_s"]
    served = result["served_all_s"]
    return [
        clients,
        driver,
        kind,
        "never" if served is None else served,
        result["first_served_s"].get("median", "-"),
        result["missed_deadline"],
        attempts["storm_peak"],
        attempts["storm_mean"],
        attempts["steady_mean"],
        result["simulator_stats"]["limited"],
        sum(result["errors"].values()),
        result["requests_failed"],
    ]


if __name__ == "__main__":
    main(sys.argv[1:])
