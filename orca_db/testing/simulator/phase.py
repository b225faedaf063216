"""The life of a proxied session."""

from __future__ import annotations

import enum


class Phase(enum.Enum):
    STARTUP = "startup"  # reading the client's first packet(s)
    HELD = "held"  # paused: waiting for resume()
    CONNECTING = "connecting"  # admitted, opening the server connection
    LOGIN = "login"  # authentication and parameter exchange, until ReadyForQuery
    READY = "ready"  # forwarding
    LOSING = "losing"  # the server runs a query whose reply will be lost
    TERMINATING = "terminating"  # scale event: waiting for the backend to exit
    CLOSED = "closed"


#: Phases with a backend behind them, which a scale event ends.
LIVE = (Phase.LOGIN, Phase.READY, Phase.LOSING)
