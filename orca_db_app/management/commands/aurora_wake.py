"""``manage.py aurora_wake``: connect until the cluster answers ``SELECT 1``.

Run it before a batch job or a migration on a cluster that may be paused.
Exit codes: 0 awake, 1 the timeout passed, 2 an error waiting cannot fix
(docs/commands.md#aurora_wake).
"""

from __future__ import annotations

import math
import shutil
import threading
import time
from typing import Any

from django.db import connections

from orca_db.classify import Failure, classify
from orca_db.conf import retry_settings
from orca_db.sql import scrub_message
from orca_db_app.management.base import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    DatabaseCommand,
    connect_with,
    driver_params,
    usage_error,
)

#: Longest single connection attempt (seconds). A resuming cluster holds a
#: connection until it is up; giving up on it now and then and trying again
#: costs nothing and gets past a connection that was silently dropped.
ATTEMPT_TIMEOUT = 10
#: How often the waiting loop wakes to redraw progress and check the timeout.
TICK = 0.1
#: Without a terminal, a "still waiting" line at most this often (seconds).
PLAIN_PROGRESS_EVERY = 5.0
#: How often to ask AWS for the cluster's state (OPTIONS["aurora"]["cluster"]).
CLUSTER_EVERY = 5.0


class Attempt:
    """One connection attempt and ``SELECT 1``, in a thread of its own so
    that the command can keep time (and draw progress) while libpq waits."""

    def __init__(self, params: dict[str, Any]):
        self.params = params
        self.error: BaseException | None = None
        self.done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="aurora_wake", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            conn = connect_with(self.params)
            try:
                conn.cursor().execute("SELECT 1")
            finally:
                conn.close()
        except BaseException as error:
            self.error = error
        finally:
            self.done.set()


def describe(failure: Failure) -> str:
    message = " ".join(scrub_message(failure.message).split())
    code = f" [{failure.sqlstate}]" if failure.sqlstate else ""
    return f"{failure.error_type}{code}: {message}"


class Command(DatabaseCommand):
    help = (
        "Connect to the database until it answers SELECT 1, waking a paused "
        "Aurora Serverless cluster. Exit 0 when awake, 1 when --timeout passed, "
        "2 on an error waiting cannot fix (bad password, unknown database or host)."
    )

    default_timeout = 120.0

    def handle(
        self, *, database: str, as_json: bool, timeout: float, verbosity: int, **options: Any
    ) -> None:
        self.alias = self.database_alias(database)
        self.as_json = as_json
        self.verbosity = verbosity
        self.tty = self.stdout.isatty() and not as_json and verbosity >= 1
        # Settings the backend refuses end it here.
        self._attempts = self.attempt_schedule(database, math.inf)

        started = time.monotonic()
        deadline = started + timeout
        self._attempts.deadline_at = deadline
        self.attempts = 0
        self.last_error: str | None = None
        self.started = started
        self._last_plain = started
        self.cluster_states: list[str] = []
        self.cluster: dict[str, Any] | None = None
        self._cluster_asked = -math.inf
        self._watch_cluster(connecting=False)
        if verbosity >= 2:
            self._plain(f"waking (timeout {timeout:g} s)")
        try:
            self._wait(deadline, timeout)
        except KeyboardInterrupt:
            if self.tty:
                self.stdout.write("")  # keep the progress line, end it
            raise

    def _wait(self, deadline: float, timeout: float) -> None:
        database = self.alias
        while True:
            self.attempts += 1
            # Asked at once on the first attempt: the state it found (paused)
            # becomes "resuming" as soon as a connect is under way.
            self._watch_cluster(connecting=True, force=self.attempts == 1)
            remaining = deadline - time.monotonic()
            attempt = Attempt(driver_params(database, min(ATTEMPT_TIMEOUT, math.ceil(remaining))))
            while not attempt.done.wait(min(TICK, max(0.0, deadline - time.monotonic()))):
                self._progress()
                if time.monotonic() >= deadline:
                    # libpq may still be waiting; its thread ends on its own
                    # within ATTEMPT_TIMEOUT and closes what it opened.
                    return self._finish("timeout", timeout)
            if attempt.error is None:
                return self._finish("awake", timeout)
            failure = classify(attempt.error)
            error = describe(failure)
            if not failure.retryable:
                self.last_error = error
                return self._finish("error", timeout)
            if self.verbosity >= 2:
                self._plain(f"attempt {self.attempts} failed: {error}")
            elif error != self.last_error:
                self._plain(f"not yet: {error}")
            self.last_error = error
            pause = self._attempts.next_delay(storm=failure.storm)
            pause_until = deadline if pause is None else time.monotonic() + pause
            while time.monotonic() < pause_until:
                time.sleep(min(TICK, max(0.0, pause_until - time.monotonic())))
                self._progress()
            if time.monotonic() >= deadline:
                return self._finish("timeout", timeout)

    def _watch_cluster(self, *, connecting: bool, force: bool = False) -> None:
        """Note the cluster's state from AWS (paused, resuming, available),
        at most every CLUSTER_EVERY seconds; nothing without a cluster key."""
        if not force and time.monotonic() - self._cluster_asked < CLUSTER_EVERY:
            return
        self._cluster_asked = time.monotonic()
        from orca_db.aws.rds import cluster_state, waking_state

        status = cluster_state(retry_settings(connections[self.alias]).aws)
        state = waking_state(status, connecting=connecting)
        if status is None or state is None:
            return
        self.cluster = {**status.as_dict(), "state": state}
        if not self.cluster_states or self.cluster_states[-1] != state:
            self.cluster_states.append(state)
            self._plain(f"cluster {status.identifier}: {state}")

    # ----- output -----------------------------------------------------------

    def _elapsed(self) -> float:
        return time.monotonic() - self.started

    def _progress(self) -> None:
        self._watch_cluster(connecting=True)
        if self.tty:
            line = f"Waking {self.alias!r}: {self._elapsed():5.1f} s, attempt {self.attempts}"
            if self.cluster_states:
                line += f", cluster {self.cluster_states[-1]}"
            if self.last_error:
                line += f", last error: {self.last_error}"
            # \r and "erase to end of line": the same line, redrawn in place.
            width = shutil.get_terminal_size().columns - 1
            self.stdout.write(f"\r{line[:width]}\x1b[K", ending="")
            self.stdout.flush()
        elif time.monotonic() - self._last_plain >= PLAIN_PROGRESS_EVERY:
            self._plain(f"still waiting (attempt {self.attempts})")

    def _plain(self, text: str) -> None:
        """A line of its own, for logs and pipes (not on a terminal)."""
        if self.tty or self.as_json or self.verbosity < 1:
            return
        self._last_plain = time.monotonic()
        self.stdout.write(f"[{self._elapsed():6.1f} s] {self.alias}: {text}")

    def _finish(self, status: str, timeout: float) -> None:
        elapsed = self._elapsed()
        self._watch_cluster(connecting=status != "awake", force=True)
        if self.tty:
            self.stdout.write("\r\x1b[K", ending="")
        code = {"awake": EXIT_OK, "timeout": EXIT_FAILED, "error": EXIT_USAGE}[status]
        if self.as_json:
            self.write_json(
                {
                    "database": self.alias,
                    "status": status,
                    "elapsed_seconds": round(elapsed, 3),
                    "attempts": self.attempts,
                    "last_error": self.last_error,
                    "cluster_states": self.cluster_states,
                    "cluster": self.cluster,
                    "exit_code": code,
                }
            )
        elif status == "awake":
            if self.verbosity >= 1:
                self.stdout.write(
                    self.style.SUCCESS(
                        f"Database {self.alias!r} is awake after {elapsed:.1f} s "
                        f"({self.attempts} attempt{'s' if self.attempts != 1 else ''})."
                    )
                )
        elif status == "timeout":
            last = f" Last error: {self.last_error}" if self.last_error else ""
            self.stderr.write(
                f"Database {self.alias!r} did not answer within {timeout:g} s "
                f"(waited {elapsed:.1f} s, {self.attempts} "
                f"attempt{'s' if self.attempts != 1 else ''}).{last}"
            )
        else:
            # As every command's error of this kind reads (base.connect).
            raise usage_error(
                f"Cannot connect to database {self.alias!r}, and waiting will not "
                f"help: {self.last_error}"
            )
        self.exit(code)
