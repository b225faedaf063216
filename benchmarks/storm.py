"""How hard does one client knock on a server that stays full?

A sustained storm: the simulator answers every new connection with ``FATAL
53300 too many clients`` for ``--seconds`` (default 5), as a resuming Aurora
cluster can for seconds while hundreds of clients connect. One client per
configuration tries to connect through it with a deadline just past the
storm; the figure is how many connection attempts it made, per second of
storm. Multiply by a fleet's size for the load the fleet adds to a server
that is already refusing it. Configurations: orca-db's defaults (storm
backoff: full jitter up to ``backoff_storm_max``), orca-db with the
previous release's single backoff shape (half jitter, ceiling 0.25 s, no
storm shape), and a naive loop retrying every 0.1 s::

    python -m benchmarks.storm [--seconds 5] [--trials 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

from benchmarks import common

CONFIGS = {
    "orca (defaults)": {},
    "orca, one shape (0.25 s)": {"backoff_max": 0.25, "backoff_storm_max": 0.25},
}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--trials", type=int, default=3)
    args = parser.parse_args(argv)
    sys.path.insert(0, str(common.ROOT))
    import django
    from django.conf import settings

    from orca_db.testing.simulator import AuroraSimulator

    server = common.start_server()
    sim = AuroraSimulator("127.0.0.1", server.port).start()
    base = {**server.django_settings(), "HOST": "127.0.0.1", "PORT": str(sim.port)}
    databases = {
        name: {"ENGINE": common.AURORA_ENGINE, **base, "OPTIONS": {"aurora": options}}
        for name, options in CONFIGS.items()
    }
    databases["default"] = {"ENGINE": common.STOCK_ENGINE, **base}
    settings.configure(DATABASES=databases, USE_TZ=True)
    django.setup()
    from django.db import DatabaseError, connections

    results: dict[str, list[float]] = {name: [] for name in [*CONFIGS, "naive 0.1 s"]}
    try:
        for _ in range(args.trials):
            for name in results:
                sim.limit_connections(0)
                before = sim.stats["limited"]
                deadline = time.monotonic() + args.seconds
                if name == "naive 0.1 s":
                    while time.monotonic() < deadline:
                        try:
                            connections["default"].connect()
                        except Exception:  # the driver's own error, unwrapped
                            time.sleep(0.1)
                else:
                    connections[name].settings_dict["OPTIONS"]["aurora"]["deadline"] = args.seconds
                    try:
                        connections[name].connect()
                    except DatabaseError:
                        pass
                results[name].append((sim.stats["limited"] - before) / args.seconds)
                sim.limit_connections(None)
                connections[name if name in CONFIGS else "default"].close()
    finally:
        sim.stop()
        server.destroy()
    rows = [
        [name, f"{statistics.median(v):.1f}", f"{min(v):.1f}-{max(v):.1f}"]
        for name, v in results.items()
    ]
    print(f"Attempts per second of one client during a {args.seconds:g} s storm (53300)")
    print(common.table(["client", "median", "range"], rows))
    data = {"seconds": args.seconds, "trials": args.trials, "attempts_per_second": results}
    print(f"-> {common.save('storm', data)}")
    return data


if __name__ == "__main__":
    main()
