"""What a SQL statement is, and how to show it without its values.

Two speeds, one API:

- :func:`profile` (lexical, cached, cheap): asked on every statement sent.
- :func:`is_replayable_read` and :func:`session_effects` (PostgreSQL's own
  parser, through pglast, imported on first use): asked after a failure,
  or for the rare statements that change session state.

And :func:`scrub_sql` / :func:`scrub_message` for logs and events.
docs/retry-safety.md, "How statements are classified", explains the rules.
"""

from typing import TYPE_CHECKING, Any

from .lexical import Profile, profile

if TYPE_CHECKING:
    from .effects import SessionEffect, session_effects
    from .replay import is_replayable_read
    from .scrub import STATEMENT_LIMIT, scrub_message, scrub_sql

__all__ = [
    "STATEMENT_LIMIT",
    "Profile",
    "SessionEffect",
    "is_replayable_read",
    "profile",
    "scrub_message",
    "scrub_sql",
    "session_effects",
]


def __getattr__(name: str) -> Any:
    # Loaded on first use, not at a cold start: the replay and session
    # answers are needed after a failure (and dataclasses pulls in inspect),
    # scrubbing when an event is reported.
    if name in ("STATEMENT_LIMIT", "scrub_message", "scrub_sql"):
        from . import scrub

        return getattr(scrub, name)
    if name == "is_replayable_read":
        from .replay import is_replayable_read

        return is_replayable_read
    if name in ("session_effects", "SessionEffect"):
        from . import effects

        return getattr(effects, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
