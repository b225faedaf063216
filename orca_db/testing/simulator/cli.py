"""The simulator's command line, for demos::

    python -m orca_db.testing.simulator --upstream 127.0.0.1:5432 --listen 127.0.0.1:6543

Commands on standard input, or signals when run in the background."""

from __future__ import annotations

import argparse
import logging
import signal
import sys

from .proxy import AuroraSimulator

_COMMANDS = """\
commands (one per line on stdin):
  pause [SECONDS]          hold new connections (until resume, or for SECONDS)
  storm FRACTION [HOW]     pause, failing FRACTION of new connections fast
                           (HOW: eof, too_many_connections, pg_hba, starting_up)
  resume                   release held connections
  scale                    scale event: terminate every session (FATAL 57P01)
  reject [N]               the next N startups fail past the scale point
  limit N|off              refuse connections beyond N server sessions (53300)
  starting on|off          refuse new connections as starting up (57P03)
  silence                  carry nothing either way, close nothing
  unsilence                deliver what was held and carry on
  lose [N [TEXT]]          the next N queries (containing TEXT) run, their
                           reply never comes: the connection is cut
  drop                     cut every connection with no message
  stats                    print the counters
  quit                     stop
signals: SIGUSR1 scale event, SIGUSR2 pause/resume, SIGHUP drop, SIGINT/SIGTERM stop"""


def _address(text: str, default_host: str = "127.0.0.1") -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host or default_host, int(port)


def _switch(word: str) -> bool:
    if word.lower() in ("on", "true", "1", "yes"):
        return True
    if word.lower() in ("off", "false", "0", "no"):
        return False
    raise ValueError(f"expected on or off, got {word!r}")


def _run_command(sim: AuroraSimulator, line: str) -> bool:
    """Run one command line; False when it asks to stop."""
    words = line.split()
    if not words:
        return True
    command, args = words[0].lower(), words[1:]
    if command in ("quit", "exit", "stop"):
        return False
    if command == "pause":
        sim.pause(resume_after=float(args[0]) if args else None)
    elif command == "storm":
        fraction = float(args[0]) if args else 0.5
        sim.pause(storm=fraction, storm_failure=args[1] if len(args) > 1 else "eof")
    elif command == "resume":
        sim.resume()
    elif command == "scale":
        print(f"terminated {sim.scale_event()} sessions", flush=True)
    elif command == "reject":
        sim.reject_startups(int(args[0]) if args else 1)
    elif command == "limit":
        sim.limit_connections(None if args[0].lower() in ("off", "none") else int(args[0]))
    elif command == "starting":
        sim.starting_up(_switch(args[0] if args else "on"))
    elif command == "silence":
        print(f"silenced {sim.silence()} sessions", flush=True)
    elif command == "unsilence":
        print(f"unsilenced {sim.unsilence()} sessions", flush=True)
    elif command == "lose":
        sim.lose_replies(int(args[0]) if args else 1, contains=" ".join(args[1:]) or None)
    elif command == "drop":
        print(f"dropped {sim.drop_connections()} connections", flush=True)
    elif command != "stats":
        print(_COMMANDS, flush=True)
        return True
    print(" ".join(f"{name}={value}" for name, value in sim.stats.items()), flush=True)
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m orca_db.testing.simulator",
        description="An Aurora Serverless simulator in front of a real PostgreSQL.",
        epilog=_COMMANDS,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--upstream",
        type=_address,
        required=True,
        help="HOST:PORT of the real PostgreSQL (HOST may be a Unix socket directory)",
    )
    parser.add_argument(
        "--listen", type=_address, default=("127.0.0.1", 6543), help="HOST:PORT to listen on"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    sim = AuroraSimulator(*args.upstream, listen_host=args.listen[0], listen_port=args.listen[1])
    sim.start()
    print(
        f"Aurora simulator on {sim.host}:{sim.port} -> {args.upstream[0]}:{args.upstream[1]}"
        " (type help)",
        flush=True,
    )

    def toggle_pause(*_: object) -> None:
        sim.resume() if sim.paused else sim.pause()

    def interrupt(*_: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGUSR1, lambda *_: sim.scale_event())
    signal.signal(signal.SIGUSR2, toggle_pause)
    signal.signal(signal.SIGHUP, lambda *_: sim.drop_connections())
    signal.signal(signal.SIGTERM, interrupt)
    try:
        for line in sys.stdin:
            try:
                if not _run_command(sim, line):
                    break
            except (ValueError, IndexError) as exc:
                print(f"error: {exc}", flush=True)
        else:
            # No (more) input, as when run in the background: signals drive it.
            while True:
                signal.pause()
    except KeyboardInterrupt:
        pass
    finally:
        sim.stop()
    return 0
