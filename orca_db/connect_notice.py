"""A wrong HOST or PORT is not a freeze: say so while the connect retries.

A connection refused (or a host unreachable, or a name DNS cannot resolve
yet) by an address that has not accepted a connection since this process
started is more likely a typo than a restart. The connect goes on retrying
within its deadline as before (an Aurora restart or failover refuses
connections for a while, and a Lambda cold start is a process that never
reached the host either), but one WARNING on ``orca_db.retry`` names the
database, the host, the port and the error at the first refusal, and a
progress line follows every :data:`PROGRESS_EVERY` seconds while the
refusals go on. An address that answered before retries quietly (INFO lines,
the retry event), as a restart should. docs/backend.md#a-database-that-never-answered.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time

from .error_texts import NO_ANSWER_TEXT

__all__ = ["PROGRESS_EVERY", "answered", "failed", "forget", "succeeded"]

logger = logging.getLogger("orca_db.retry")

#: Seconds between two progress lines of one wait.
PROGRESS_EVERY = 10.0

#: The clock (tests replace it).
clock = time.monotonic


@dataclasses.dataclass
class _Wait:
    started: float
    last_line: float
    last_failure: float
    failures: int = 0


_lock = threading.Lock()
_answered: set[tuple[str, str]] = set()
_waits: dict[tuple[str, str], _Wait] = {}


def _target(host: object, port: object) -> tuple[str, str]:
    return (str(host or ""), str(port or ""))


def _where(host: str, port: str) -> str:
    if not host or host.startswith("/"):
        return f"the Unix socket in {host or 'the default directory'}, port {port or 5432}"
    return f"{host}:{port or 5432}"


def answered(host: object, port: object) -> bool:
    """``host:port`` accepted a connection in this process."""
    return _target(host, port) in _answered


def succeeded(alias: str, host: object, port: object) -> None:
    """A connection to ``host:port`` was made."""
    target = (str(host or ""), str(port or ""))  # _target(), inline: every connect
    if target in _answered:
        return
    with _lock:
        _answered.add(target)
        wait = _waits.pop(target, None)
    if wait is not None:
        logger.warning(
            "Database %r at %s answered after %.1f s",
            alias, _where(*target), clock() - wait.started,
        )  # fmt: skip


def failed(alias: str, host: object, port: object, error: BaseException) -> None:
    """A connect to ``host:port`` failed with ``error``: the first refusal
    of an address that never answered is told at once, then progress."""
    target = _target(host, port)
    if target in _answered:
        return
    message = " ".join(str(error).split())
    if not NO_ANSWER_TEXT.search(message):
        return
    from .sql import scrub_message

    now = clock()
    with _lock:
        wait = _waits.get(target)
        # A refusal long after the last one starts a new wait (the next
        # request of a server that gave up on the previous one).
        if wait is None or now - wait.last_failure > PROGRESS_EVERY:
            wait = _waits[target] = _Wait(started=now, last_line=now, last_failure=now)
            first = True
        else:
            first = False
        wait.failures += 1
        wait.last_failure = now
        if not first:
            if now - wait.last_line < PROGRESS_EVERY:
                return
            wait.last_line = now
        waited, failures = now - wait.started, wait.failures
    where = _where(*target)
    details = {
        "kind": "connect_unanswered",
        "database": alias,
        "server_host": target[0],
        "server_port": target[1],
        "error_type": type(error).__name__,
        "attempt": failures,
        "elapsed_ms": round(waited * 1000, 1),
    }
    error_text = scrub_message(message)
    if first:
        logger.warning(
            "Database %r at %s has not accepted a connection since this process started: "
            "%s (retrying within the deadline: a wrong HOST or PORT, or the database "
            "still starting?)",
            alias, where, error_text, extra={"orca_db": details},
        )  # fmt: skip
    else:
        logger.warning(
            "Database %r at %s: still no connection after %.0f s (%d attempts): %s",
            alias, where, waited, failures, error_text, extra={"orca_db": details},
        )  # fmt: skip


def forget() -> None:
    """Forget every address (tests)."""
    with _lock:
        _answered.clear()
        _waits.clear()
