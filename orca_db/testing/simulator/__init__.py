"""An Aurora Serverless simulator: a PostgreSQL wire-protocol proxy in front
of a real PostgreSQL that injects the faults Aurora Serverless shows its
clients (docs/simulator.md)::

    sim = AuroraSimulator("127.0.0.1", 5432).start()
    DATABASES["default"] = sim.django_settings(DATABASES["default"])
    sim.pause()              # new connections are held until resume()
    sim.resume()
    sim.scale_event()        # every live backend is terminated, clients get
                             # FATAL 57P01 "... serverless scale event timeout"
    sim.reject_startups(2)   # the next 2 connects fail at startup
    sim.limit_connections(50)  # FATAL 53300 beyond 50 server sessions
    sim.starting_up(True)    # FATAL 57P03 "the database system is starting up"
    sim.silence()            # nothing flows either way, nothing is closed
    sim.unsilence()
    sim.lose_replies(1)      # the next query runs, its reply never comes
    sim.drop_connections()   # every connection cut, no message
    sim.stop()

The proxy runs an asyncio loop in a background thread. From the command
line, for demos::

    python -m orca_db.testing.simulator --upstream 127.0.0.1:5432 --listen 127.0.0.1:6543

Modules: ``proxy`` (the control surface), ``faults`` (the faults in force:
all a session consults), ``session`` and ``server_side`` (one proxied
connection), ``client_link`` (silence), ``watch`` (finding queries for lost
replies), ``upstream`` (the real server), ``messages``, ``counters``,
``loop``, ``cli`` (``__main__``).
"""

from .counters import STAT_NAMES
from .messages import SCALE_EVENT_MESSAGE, SCALE_POINT_MESSAGE
from .proxy import AuroraSimulator

__all__ = ["SCALE_EVENT_MESSAGE", "SCALE_POINT_MESSAGE", "STAT_NAMES", "AuroraSimulator"]
